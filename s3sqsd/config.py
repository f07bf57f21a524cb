"""Configuration: YAML file -> frozen dataclasses, strictly validated.

TYPES AND SIGNATURES ABOVE THE LINE BELOW ARE THE CONTRACT OTHER MODULES USE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from s3sqsd.errors import ConfigError  # noqa: F401
from s3sqsd.events import KeyDecodingPolicy

DEFAULT_CONFIG_PATH = Path("/etc/s3sqsd/config.yaml")
DEFAULT_DOWNLOAD_FOLDER = Path("/var/lib/s3sqsd/downloads")  # StateDirectory=s3sqsd in the unit
CONFIG_ENV_VAR = "S3SQSD_CONFIG"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Backoff for transient failures; delays are SQS visibility changes, never sleeps."""

    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration. Nothing past config.py sees the raw YAML."""

    sqs_queue_url: str
    download_folder: Path = DEFAULT_DOWNLOAD_FOLDER
    aws_region: str | None = None
    s3_bucket_name: tuple[str, ...] = ()  # allow-list; empty means any bucket
    endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None
    dead_letter_queue_url: str | None = None
    workers: int = 8
    wait_time_seconds: int = 20
    visibility_timeout_seconds: int = 120
    shutdown_timeout_seconds: float = 30.0
    retry: RetryConfig = field(default_factory=RetryConfig)
    key_decoding: KeyDecodingPolicy = field(default_factory=KeyDecodingPolicy)
    file_mode: int = 0o640
    directory_mode: int = 0o750
    log_level: str = "info"

    @property
    def s3_endpoint(self) -> str | None:
        """Endpoint for S3: the per-service override, else the shared one, else AWS."""
        return self.s3_endpoint_url or self.endpoint_url

    @property
    def sqs_endpoint(self) -> str | None:
        """Endpoint for SQS: the per-service override, else the shared one, else AWS."""
        return self.sqs_endpoint_url or self.endpoint_url

    @property
    def region(self) -> str | None:
        """``aws_region``, else the region in an AWS queue URL, else boto3's own chain."""
        raise NotImplementedError


def load_config(path: Path) -> Config:
    """Read and validate the file; raise ConfigError listing every problem found."""
    raise NotImplementedError


def parse_config(data: object, *, source: str = "config") -> Config:
    """Validate already-loaded YAML data (pure); raise ConfigError listing every problem."""
    raise NotImplementedError


# ---- implementation below -------------------------------------------------------------------
