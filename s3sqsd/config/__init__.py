"""Configuration: YAML file -> frozen dataclasses, strictly validated (no I/O past ``load``).

A package so that each part of the file has its own module; this module re-exports the names
the rest of s3sqsd and the tests import from ``s3sqsd.config``, so none of them changes.

Where things live (each module imports only those above it):

- ``values.py``: the problem list (``_Problems``), how a value is shown in a message
  (``_show``), and the checks of single values every section uses: integer and seconds
  ranges, choices, file modes, booleans, absolute paths, bucket names, ``download_folder``.
- ``urls.py``: queue, endpoint and proxy URLs; the region an AWS queue URL names.
- ``model.py``: the contract: the frozen dataclasses (``Config``, ``RouteConfig``,
  ``AwsConfig``, ``RoleConfig``, ``BucketGuards``...), their defaults, limits and choices.
- ``keys.py``: the keys each level may have; the "unknown key (did you mean...)" message.
- ``command.py``: ``on_download`` (top level and per route).
- ``sections.py``: ``retry``, ``key_decoding``, ``large_objects``, ``reconcile``, ``metrics``
  (and its ``listen`` address).
- ``aws.py``: the ``aws`` section: roles, network keys; the guards' values.
- ``routes.py``: ``routes`` and the checks across routes.
- ``parse.py``: ``parse_config``: the top-level keys and the checks across them.
- ``load.py``: ``load_config``: reading the file, YAML, duplicate keys, decimal modes.
"""

from s3sqsd.config.load import load_config
from s3sqsd.config.model import (
    AFTER_DOWNLOAD_CHOICES,
    AUTO,
    AUTO_START_WORKERS,
    CONFIG_ENV_VAR,
    DEFAULT_COMMAND_TIMEOUT_SECONDS,
    DEFAULT_CONFIG_PATH,
    DEFAULT_DOWNLOAD_FOLDER,
    DEFAULT_MAX_WORKERS,
    DEFAULT_METRICS_LISTEN,
    DEFAULT_MIN_WORKERS,
    FILE_MTIME_CHOICES,
    FILE_MTIME_LAST_MODIFIED,
    INTEGRITY_CHOICES,
    LARGE_SLOTS,
    MAX_POLLERS,
    MAX_WAIT_TIME_SECONDS,
    MAX_WORKERS,
    MIN_BANDWIDTH_BYTES_PER_SECOND,
    ON_REMOVE_CHOICES,
    S3_MAX_OBJECT_BYTES,
    STS_REGIONAL_CHOICES,
    UNROUTED_CHOICES,
    AwsConfig,
    BucketGuards,
    CommandConfig,
    Config,
    LargeObjectsConfig,
    MetricsConfig,
    MiB,
    ReconcileConfig,
    RetryConfig,
    RoleConfig,
    RouteConfig,
    guards_of,
    split_listen,
)
from s3sqsd.config.parse import parse_config

__all__ = [
    "AFTER_DOWNLOAD_CHOICES",
    "AUTO",
    "AUTO_START_WORKERS",
    "CONFIG_ENV_VAR",
    "DEFAULT_COMMAND_TIMEOUT_SECONDS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DOWNLOAD_FOLDER",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_METRICS_LISTEN",
    "DEFAULT_MIN_WORKERS",
    "FILE_MTIME_CHOICES",
    "FILE_MTIME_LAST_MODIFIED",
    "INTEGRITY_CHOICES",
    "LARGE_SLOTS",
    "MAX_POLLERS",
    "MAX_WAIT_TIME_SECONDS",
    "MAX_WORKERS",
    "MIN_BANDWIDTH_BYTES_PER_SECOND",
    "ON_REMOVE_CHOICES",
    "S3_MAX_OBJECT_BYTES",
    "STS_REGIONAL_CHOICES",
    "UNROUTED_CHOICES",
    "AwsConfig",
    "BucketGuards",
    "CommandConfig",
    "Config",
    "LargeObjectsConfig",
    "MetricsConfig",
    "MiB",
    "ReconcileConfig",
    "RetryConfig",
    "RoleConfig",
    "RouteConfig",
    "guards_of",
    "load_config",
    "parse_config",
    "split_listen",
]
