"""Configuration: YAML file -> frozen dataclasses, strictly validated.

TYPES AND SIGNATURES ABOVE THE LINE BELOW ARE THE CONTRACT OTHER MODULES USE.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import yaml

from s3sqsd.backoff import SQS_MAX_VISIBILITY_SECONDS
from s3sqsd.errors import ConfigError
from s3sqsd.events import KeyDecoding, KeyDecodingPolicy

DEFAULT_CONFIG_PATH = Path("/etc/s3sqsd/config.yaml")
DEFAULT_DOWNLOAD_FOLDER = Path("/var/lib/s3sqsd/downloads")  # StateDirectory=s3sqsd in the unit
CONFIG_ENV_VAR = "S3SQSD_CONFIG"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Backoff for transient failures; delays are SQS visibility changes, never sleeps."""

    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0


DEFAULT_COMMAND_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class CommandConfig:
    """A program run after each download (``on_download``): an argument list, never a shell.

    ``command[0]`` is an absolute path: the service's PATH under a hardened unit is minimal and
    not the operator's, and a PATH lookup would make "which program runs with the service's
    privileges" depend on the environment instead of this file.
    """

    command: tuple[str, ...]
    timeout_seconds: float = DEFAULT_COMMAND_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class RoleConfig:
    """An IAM role assumed with ``sts:AssumeRole`` from the host's own credentials (boto3's
    default chain); botocore refreshes the role's credentials before they expire.

    ``role_session_name`` None: ``s3sqsd-<host name>``, chosen at start (config parsing does
    no I/O), so CloudTrail shows which host made a call.
    """

    role_arn: str
    external_id: str | None = None
    role_session_name: str | None = None
    duration_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class BucketGuards:
    """What is sent with every S3 call to one bucket (aws.py and buckets.py add it).

    ``expected_bucket_owner``: the account id that must own the bucket (S3 answers 403 to a
    call on a bucket another account owns, so a deleted and re-created bucket is refused, not
    read). ``request_payer``: ``requester`` for a Requester Pays bucket. ``sse_customer_key_file``:
    the SSE-C key (32 bytes, raw or base64), read at start from a file only the service can read.
    """

    expected_bucket_owner: str | None = None
    request_payer: str | None = None
    sse_customer_key_file: Path | None = None

    def merged_over(self, default: BucketGuards) -> BucketGuards:
        """These guards, each unset one taken from ``default`` (a route's over the top level's)."""
        return BucketGuards(
            expected_bucket_owner=self.expected_bucket_owner or default.expected_bucket_owner,
            request_payer=self.request_payer or default.request_payer,
            sse_customer_key_file=self.sse_customer_key_file or default.sse_customer_key_file,
        )


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """How s3sqsd reaches AWS: identities and the network (``aws:`` in the file).

    ``role``: assumed for S3 (every bucket without a role of its own) and for SQS; ``sqs_role``
    (``aws.sqs``): the queue's own role, where the queue lives in another account. The network
    keys map to botocore's own options (aws.py): ``ca_bundle`` (``verify``), ``proxy_url`` and
    ``proxy_ca_bundle`` (``proxies``, ``proxies_config``), ``use_fips_endpoint``,
    ``use_dualstack_endpoint``, and ``sts_regional_endpoints`` for the STS client that assumes
    roles; ``sts_endpoint_url`` points STS elsewhere (a VPC endpoint, an emulator).
    """

    role: RoleConfig | None = None
    sqs_role: RoleConfig | None = None
    ca_bundle: Path | None = None
    proxy_url: str | None = None
    proxy_ca_bundle: Path | None = None
    use_fips_endpoint: bool = False
    use_dualstack_endpoint: bool = False
    sts_regional_endpoints: str = "regional"  # STS_REGIONAL_CHOICES
    sts_endpoint_url: str | None = None


STS_REGIONAL_CHOICES = ("regional", "legacy")


def guards_of(source: RouteConfig | Config) -> BucketGuards:
    """The guard keys of a route or of the top level, as one value."""
    return BucketGuards(
        expected_bucket_owner=source.expected_bucket_owner,
        request_payer=source.request_payer,
        sse_customer_key_file=source.sse_customer_key_file,
    )


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One rule of ``routes``: which objects it takes, where they go, what runs after.

    Matchers (all given ones must match; none given: the route takes every object): ``bucket``
    (exact name), ``prefix`` (the decoded key starts with it), ``glob`` (``fnmatch`` on the whole
    decoded key, case-sensitive; ``*`` and ``?`` match ``/`` too). ``strip_prefix`` removes
    ``prefix`` (which then ends with ``/``) from the path under ``download_folder``; the object
    is still fetched, and its provenance recorded, under its full key. ``on_download`` None
    means the top-level ``on_download``.
    """

    download_folder: Path
    bucket: str | None = None
    prefix: str | None = None
    glob: str | None = None
    strip_prefix: bool = False
    after_download: str | None = None  # AFTER_DOWNLOAD_CHOICES; None: the top-level one
    on_download: CommandConfig | None = None
    # The bucket's own identity and guards (they need ``bucket``): unset ones are the top level's.
    aws: RoleConfig | None = None
    expected_bucket_owner: str | None = None
    request_payer: str | None = None
    sse_customer_key_file: Path | None = None

    @property
    def guards(self) -> BucketGuards:
        """The route's own guards (unset ones None: see ``BucketGuards.merged_over``)."""
        return guards_of(self)


DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The metrics endpoint; ``listen`` is ``host:port``, ``[IPv6]:port`` or ``name:port``."""

    listen: str = DEFAULT_METRICS_LISTEN

    @property
    def host(self) -> str:
        """The address or host name to bind, without the brackets of an IPv6 address."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``name:port`` -> (host without brackets, port); the
    value was validated when the config was read (``_listen_problem``)."""
    host, _, port = listen.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


MiB = 1 << 20
AUTO = "auto"  # workers: auto
AUTO_START_WORKERS = 8  # where workers: auto starts (the fixed default before it existed)
DEFAULT_MIN_WORKERS = 4
# Large objects downloading at once in their own lane (worker/concurrency.py: *Fairness*).
LARGE_SLOTS = 4
DEFAULT_MAX_WORKERS = 64  # docs/configuration.md argues it
S3_MAX_OBJECT_BYTES = 5 << 40  # 5 TiB
# The lowest bandwidth limit: a throttled GET is read 256 KiB at a time (limits.py), and below
# 64 KiB/s each read would wait over 4 s (many times that with downloads sharing the limit),
# long enough for the connection to sit unread until a server or proxy drops it. A slower
# link wants fewer ``workers``, not a lower limit.
MIN_BANDWIDTH_BYTES_PER_SECOND = 64 << 10


@dataclass(frozen=True, slots=True)
class LargeObjectsConfig:
    """Objects of ``threshold_bytes`` or more are fetched as ranged GETs in parallel.

    One GET stream is bound to one CPU core (read, checksum, write in one thread); ranges of
    ``part_size_bytes`` on up to ``concurrency`` threads shared by every download are what
    boto3's ``download_file`` does, here with the whole-object checks kept (see ranged.py).
    """

    threshold_bytes: int = 64 * MiB
    part_size_bytes: int = 8 * MiB
    concurrency: int = 10  # s3transfer's max_concurrency


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """The daemon's own listing pass (reconcile.py): at start, then every ``interval_seconds``.

    The section's presence turns the periodic pass on; without it, SIGUSR1 still runs one pass.
    ``workers`` is the pass's own download threads: few, so it never competes with events.
    """

    interval_seconds: int = 3600
    workers: int = 2
    # Objects younger than this are left to their events, still on their way (S3 delivers
    # them within seconds): fetching them first would call every fresh upload "missing".
    min_age_seconds: int = 300


UNROUTED_CHOICES = ("acknowledge", "dead_letter")
ON_REMOVE_CHOICES = ("keep", "delete")
# What happens to the source object once its file is in place (and on_download exited 0):
# kept, or deleted in S3, exactly the version downloaded (sources.py).
AFTER_DOWNLOAD_CHOICES = ("keep", "delete")
# What to do with an object of which this host can verify nothing but the length (verify.py):
# accept it with a warning, or refuse it (dead-lettered). docs/configuration.md argues the default.
INTEGRITY_CHOICES = ("best_effort", "strict")
# Each file's mtime: its object's LastModified (so tools that compare times, rsync, make, see
# S3's time), or the time of the download (what s3sqsd did before it kept LastModified).
FILE_MTIME_LAST_MODIFIED = "last_modified"
FILE_MTIME_CHOICES = (FILE_MTIME_LAST_MODIFIED, "download_time")


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
    # Downloads at once: "auto" (the worker's concurrency controller, within min_workers and
    # max_workers), or a fixed count.
    workers: int | str = AUTO
    min_workers: int = DEFAULT_MIN_WORKERS  # with workers: auto, the fewest downloads at once
    max_workers: int = DEFAULT_MAX_WORKERS  # with workers: auto, the most
    pollers: int = 1  # receiver threads long-polling at once
    wait_time_seconds: int = 20
    visibility_timeout_seconds: int = 120
    shutdown_timeout_seconds: float = 30.0
    retry: RetryConfig = field(default_factory=RetryConfig)
    key_decoding: KeyDecodingPolicy = field(default_factory=KeyDecodingPolicy)
    file_mode: int = 0o640
    directory_mode: int = 0o750
    file_mtime: str = FILE_MTIME_LAST_MODIFIED  # FILE_MTIME_CHOICES
    log_level: str = "info"
    on_download: CommandConfig | None = None  # run after each download; None: nothing runs
    routes: tuple[RouteConfig, ...] = ()  # empty: every object goes to download_folder
    unrouted: str = "acknowledge"  # with routes, an object no route takes: UNROUTED_CHOICES
    on_remove: str = "keep"  # what an ObjectRemoved event does locally: ON_REMOVE_CHOICES
    after_download: str = "keep"  # the source object in S3: AFTER_DOWNLOAD_CHOICES
    integrity: str = "best_effort"  # a length-only object: INTEGRITY_CHOICES
    metrics: MetricsConfig | None = None  # None: no metrics endpoint
    large_objects: LargeObjectsConfig = field(default_factory=LargeObjectsConfig)
    reconcile: ReconcileConfig | None = None  # None: no periodic pass (SIGUSR1 still runs one)
    aws: AwsConfig = field(default_factory=AwsConfig)
    # Every bucket's guards, unless its route has its own (BucketGuards).
    expected_bucket_owner: str | None = None
    request_payer: str | None = None
    sse_customer_key_file: Path | None = None
    max_bandwidth_bytes_per_second: int | None = None  # one limit for every GET; None: none
    min_free_bytes: int | None = None  # downloads wait below this free space; None: no floor

    @property
    def guards(self) -> BucketGuards:
        """The top level's guards: every bucket's, unless a route with a bucket says otherwise."""
        return guards_of(self)

    @property
    def start_workers(self) -> int:
        """The fixed ``workers``; with ``auto``, where the controller starts (also what
        ``s3sqsd sync`` uses: a one-off run has no time to climb)."""
        if isinstance(self.workers, int):
            return self.workers
        return max(self.min_workers, min(self.max_workers, AUTO_START_WORKERS))

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
        return self.aws_region or _region_from_queue_url(self.sqs_queue_url)


def load_config(path: Path, *, default_download_folder: Path = DEFAULT_DOWNLOAD_FOLDER) -> Config:
    """Read and validate the file; raise ConfigError listing every problem found.

    ``default_download_folder`` is the folder when the file sets none: the plain service's, or
    an instance's (``s3sqsd --instance NAME``, see instances.py), given by the caller.
    """
    return _load_config(path, default_download_folder=default_download_folder)


def parse_config(
    data: object,
    *,
    source: str = "config",
    default_download_folder: Path = DEFAULT_DOWNLOAD_FOLDER,
) -> Config:
    """Validate already-loaded YAML data (pure); raise ConfigError listing every problem."""
    return _parse_config(data, source=source, default_download_folder=default_download_folder)


# ---- implementation below -------------------------------------------------------------------

# Limits that come from SQS itself.
_MAX_WAIT_TIME_SECONDS = 20  # ReceiveMessage long-poll maximum
MAX_WAIT_TIME_SECONDS = _MAX_WAIT_TIME_SECONDS  # what a reload may raise wait_time_seconds to
MAX_WORKERS = 256  # what a reload may raise workers (and max_workers) to
_MAX_VISIBILITY_SECONDS = SQS_MAX_VISIBILITY_SECONDS  # ChangeMessageVisibility maximum: 12 hours
_MAX_FILE_BYTES = 1024 * 1024  # a configuration file is a few KiB; refuse anything absurd
_MAX_SHOWN_CHARS = 200  # longer values are described, never echoed
_LOG_LEVELS = ("debug", "info", "warning", "error")

_TOP_KEYS = tuple(f.name for f in fields(Config))
_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "retry": tuple(f.name for f in fields(RetryConfig)),
    "key_decoding": tuple(f.name for f in fields(KeyDecodingPolicy)),
    "on_download": tuple(f.name for f in fields(CommandConfig)),
    "metrics": tuple(f.name for f in fields(MetricsConfig)),
    "large_objects": tuple(f.name for f in fields(LargeObjectsConfig)),
    "reconcile": tuple(f.name for f in fields(ReconcileConfig)),
    "aws": (
        *(f.name for f in fields(RoleConfig)),
        "sqs",
        *(f.name for f in fields(AwsConfig) if f.name not in ("role", "sqs_role")),
    ),
    "role": tuple(f.name for f in fields(RoleConfig)),
}
_ROUTE_KEYS = tuple(f.name for f in fields(RouteConfig))
_MAX_COMMAND_TIMEOUT_SECONDS = 86400.0  # one day; the message's lease stops at 12 hours anyway
_MAX_ROUTES = 1000  # each object is matched against them in order
_SOURCE_CHECK_DEPTH = 4  # routes[0].on_download.command: as deep as the settings go

# Hosts of AWS queue URLs: sqs.<region>.amazonaws.com (current), <region>.queue.amazonaws.com
# (legacy), with the .com.cn suffix in China; also the FIPS and dual-stack forms.
_AWS_QUEUE_HOST = re.compile(
    r"(?:sqs|sqs-fips)\.(?P<a>[a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)"
    r"|(?P<b>[a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?"
)
_REGION = re.compile(r"[a-z0-9-]+")
_OCTAL_MODE = re.compile(r"(?:0[oO])?([0-7]{1,4})")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def _region_from_queue_url(url: str) -> str | None:
    """The region named by an AWS SQS queue URL's host, or None (not AWS, or not parseable)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host is None:
        return None
    match = _AWS_QUEUE_HOST.fullmatch(host)
    if match is None:
        return None
    return match.group("a") or match.group("b")


# ---- reading the file -----------------------------------------------------------------------


def _load_config(path: Path, *, default_download_folder: Path) -> Config:
    name = str(path)
    text = _read_text(path)
    if not text.strip():
        raise ConfigError(f"{name}: the file is empty; it must set at least sqs_queue_url")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {_describe_yaml_error(exc)}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(
            f"{name}: not valid YAML: line {line}, column {column}: the control character "
            f"U+{int(exc.character):04X} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        first_line = (str(exc).splitlines() or ["unknown error"])[0]
        raise ConfigError(f"{name}: not valid YAML: {first_line}") from None
    except RecursionError:
        raise ConfigError(f"{name}: not valid YAML: nested too deeply") from None
    if root is None:
        # Only comments (the shipped template): no settings at all, so report what is required.
        data = {}
    problems = _source_problems(root)
    try:
        config = parse_config(data, source=name, default_download_folder=default_download_folder)
    except ConfigError as exc:
        # A key already reported from the text (e.g. a decimal mode) is not reported twice.
        reported = tuple(line.split(": ", 1)[0] + ": " for line in problems)
        rest = [line for line in exc.problems if not line.startswith(reported)]
        raise ConfigError([*problems, *rest]) from None
    if problems:
        raise ConfigError(problems)
    return config


def _read_text(path: Path) -> str:
    name = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a configuration file") from None
    except NotADirectoryError:
        raise ConfigError(f"{name}: a component of the path is not a directory") from None
    except PermissionError:
        raise ConfigError(
            f"{name}: permission denied; the file must be readable by the user s3sqsd runs as"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"{name}: larger than {_MAX_FILE_BYTES} bytes; not a configuration file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    """'line L, column C: problem' from yaml's marks, without yaml's echo of the file's text."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = exc.problem or exc.context or "unknown error"
    if exc.problem and exc.context:
        context_mark = exc.context_mark
        at = f" at line {context_mark.line + 1}" if context_mark is not None else ""
        what = f"{exc.problem} ({exc.context}{at})"
    return where + what


def _source_problems(root: yaml.Node | None) -> list[str]:
    """Problems only the YAML text shows, not the loaded data.

    - A key given twice in one mapping: yaml keeps the last one silently, which hides edits.
    - A mode written in decimal (``file_mode: 440``): YAML reads 440 as decimal, which is the
      valid but unintended mode 0670; only a leading 0 (``0440``) makes it octal.
    """
    problems: list[str] = []

    def check(node: yaml.Node, prefix: str, depth: int) -> None:
        if depth > _SOURCE_CHECK_DEPTH:
            return
        if isinstance(node, yaml.SequenceNode):
            # A list (routes): each entry's keys are named routes[0].key, routes[1].key...
            for index, item in enumerate(node.value):
                check(item, f"{prefix.removesuffix('.')}[{index}].", depth + 1)
            return
        if not isinstance(node, yaml.MappingNode):
            return
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    f"{prefix}{_key_text(key)}: duplicate key (lines {first_line[key]} and "
                    f"{line}); keep only one"
                )
            else:
                first_line[key] = line
            check(value_node, f"{prefix}{_key_text(key)}.", depth + 1)
            if depth == 0 and key in _MODE_KEYS and _written_in_decimal(value_node):
                text = str(value_node.value).lstrip("+")
                example = f"0{text}" if set(text) <= set("01234567") else "0640"
                problems.append(
                    f"{key}: {text} is a decimal number; write the mode in octal with a "
                    f"leading 0, such as {example} or '{example}'"
                )

    if root is not None:
        check(root, "", 0)
    return problems


_MODE_KEYS = ("file_mode", "directory_mode")


def _written_in_decimal(node: yaml.Node) -> bool:
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:int"
        and re.fullmatch(r"\+?[1-9][0-9_]+", str(node.value)) is not None
    )


# ---- validating the data --------------------------------------------------------------------


_Check = Callable[["_Problems", str, object], Any]


class _Problems:
    """Collects one line per problem, each starting with the dotted key path."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")


def _parse_config(data: object, *, source: str, default_download_folder: Path) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys to values (key: value lines), "
            f"got {_show(data)}"
        )
    problems = _Problems()
    values: dict[str, Any] = {}

    queue_url = data.get("sqs_queue_url")
    if queue_url is None:
        problems.add("sqs_queue_url", "required key is missing")
    else:
        values["sqs_queue_url"] = _url(problems, "sqs_queue_url", queue_url, queue=True)

    checks: dict[str, _Check] = {
        "download_folder": _download_folder,
        "aws_region": _aws_region,
        "s3_bucket_name": _bucket_names,
        "endpoint_url": _endpoint_url,
        "s3_endpoint_url": _endpoint_url,
        "sqs_endpoint_url": _endpoint_url,
        "dead_letter_queue_url": _queue_url,
        "workers": _workers,
        "min_workers": _int_range(1, MAX_WORKERS),
        "max_workers": _int_range(1, MAX_WORKERS),
        "pollers": _int_range(1, 32),
        "wait_time_seconds": _int_range(
            1, _MAX_WAIT_TIME_SECONDS, note="the SQS long-poll maximum; short polling is refused"
        ),
        "visibility_timeout_seconds": _int_range(5, _MAX_VISIBILITY_SECONDS, note="12 hours"),
        "shutdown_timeout_seconds": _seconds_range(0.0, 3600.0),
        "retry": _retry,
        "key_decoding": _key_decoding,
        "file_mode": _mode(0o600, "read and write"),
        "directory_mode": _mode(0o700, "read, write and search (rwx)"),
        "file_mtime": _choice(FILE_MTIME_CHOICES),
        "log_level": _log_level,
        "on_download": _command,
        "routes": _routes,
        "unrouted": _choice(UNROUTED_CHOICES),
        "on_remove": _choice(ON_REMOVE_CHOICES),
        "after_download": _choice(AFTER_DOWNLOAD_CHOICES),
        "integrity": _choice(INTEGRITY_CHOICES),
        "metrics": _metrics,
        "large_objects": _large_objects,
        "reconcile": _reconcile,
        "aws": _aws,
        "expected_bucket_owner": _account_id,
        "request_payer": _request_payer,
        "sse_customer_key_file": _absolute_file,
        "max_bandwidth_bytes_per_second": _int_range(
            MIN_BANDWIDTH_BYTES_PER_SECOND,
            1 << 40,
            note="bytes per second, 64 KiB/s to 1 TiB/s; leave it unset for no limit",
        ),
        "min_free_bytes": _int_range(0, 1 << 50, note="bytes, up to 1 PiB"),
    }
    for key, check in checks.items():
        raw = data.get(key)
        if raw is not None:  # null means "use the default", like an absent key
            values[key] = check(problems, key, raw)

    queue = values.get("sqs_queue_url")
    dlq = values.get("dead_letter_queue_url")
    if queue is not None and dlq is not None and _same_url(queue, dlq):
        problems.add(
            "dead_letter_queue_url", "must differ from sqs_queue_url (it is the same queue)"
        )

    least = values.get("min_workers") or DEFAULT_MIN_WORKERS
    most = values.get("max_workers") or DEFAULT_MAX_WORKERS
    if least > most and values.get("min_workers") is not None:
        problems.add("min_workers", f"must not be above max_workers ({most}), got {least}")
    elif least > most:
        problems.add("max_workers", f"must be at least min_workers ({least}), got {most}")

    _route_problems(problems, data, values)
    if values.get("reconcile") is not None and not values.get("s3_bucket_name"):
        routes = values.get("routes") or ()
        if not routes or any(route.bucket is None for route in routes):
            problems.add(
                "reconcile",
                "needs s3_bucket_name (or a bucket on every route): a pass lists buckets, "
                "where events name their own",
            )

    _unknown_keys(problems, data, "", _TOP_KEYS)

    if problems.lines:
        raise ConfigError(problems.lines)
    if values.get("download_folder") is None:
        values["download_folder"] = default_download_folder
    return Config(**{key: value for key, value in values.items() if value is not None})


def _unknown_keys(
    problems: _Problems, data: Mapping[Any, Any], prefix: str, valid: tuple[str, ...]
) -> None:
    for key in data:
        if isinstance(key, str) and key in valid:
            continue
        path = prefix + _key_text(key)
        problems.add(path, "unknown key" + _suggest_key(key, prefix, valid))


def _suggest_key(key: object, prefix: str, valid: tuple[str, ...]) -> str:
    if not isinstance(key, str):
        return " (keys are names such as 'workers')"
    wanted = key.strip().lower().replace("-", "_").replace(" ", "_")
    close = _closest(wanted, valid, cutoff=0.6)
    if close:
        return f" (did you mean {close!r}?)"
    # The right name at the wrong level is usually an indentation mistake.
    elsewhere: dict[str, str] = {}  # name -> how to refer to it
    if prefix:
        elsewhere.update((name, f"the top-level key {name!r}") for name in _TOP_KEYS)
    # A name at several levels (workers: top level and reconcile.workers) suggests the first.
    for section, keys in _SECTION_KEYS.items():
        if f"{section}." != prefix:
            for name in keys:
                elsewhere.setdefault(name, repr(f"{section}.{name}"))
    if not prefix.startswith("routes["):
        for name in _ROUTE_KEYS:
            elsewhere.setdefault(name, f"{name!r} in a routes entry")
    close = _closest(wanted, tuple(elsewhere), cutoff=0.8)
    if close:
        return f" (did you mean {elsewhere[close]}? check the indentation)"
    return ""


def _closest(wanted: str, candidates: tuple[str, ...], *, cutoff: float) -> str | None:
    """difflib's closest match, preferring names with the same first letter ('retries' is
    'retry', not 'metrics'): typing mistakes rarely hit the first letter."""
    scored = []
    for candidate in candidates:
        ratio = difflib.SequenceMatcher(None, wanted, candidate).ratio()
        if ratio >= cutoff:
            bonus = 0.1 if candidate[:1] == wanted[:1] else 0.0
            scored.append((ratio + bonus, candidate))
    return max(scored)[1] if scored else None


def _url(problems: _Problems, path: str, value: object, *, queue: bool) -> str | None:
    what = "an http:// or https:// queue URL" if queue else "an http:// or https:// URL"
    if not isinstance(value, str):
        problems.add(path, f"must be {what}, got {_show(value)}")
        return None
    if value.startswith("arn:"):
        problems.add(path, f"must be {what}, not an ARN, got {_show(value)}")
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        problems.add(path, f"must be {what}, got {_show(value)}")
        return None
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it holds what looks like a credential.
        problems.add(
            path,
            "must not contain user:password@; credentials come from boto3's standard chain, "
            "never from this file",
        )
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        problems.add(path, f"must be {what} with a host, got {_show(value)}")
        return None
    if any(ch.isspace() for ch in value):
        problems.add(path, f"must not contain whitespace, got {_show(value)}")
        return None
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        problems.add(path, f"must not have a query string or fragment, got {_show(value)}")
        return None
    if queue and parts.path.strip("/") == "":
        problems.add(
            path,
            "must include the queue's path, as in "
            f"https://sqs.<region>.amazonaws.com/<account>/<queue>, got {_show(value)}",
        )
        return None
    return value


def _queue_url(problems: _Problems, path: str, value: object) -> str | None:
    return _url(problems, path, value, queue=True)


def _endpoint_url(problems: _Problems, path: str, value: object) -> str | None:
    return _url(problems, path, value, queue=False)


def _same_url(a: str, b: str) -> bool:
    def canonical(url: str) -> tuple[str, str | None, int | None, str]:
        parts: SplitResult = urlsplit(url)
        return (parts.scheme.lower(), parts.hostname, parts.port, parts.path.rstrip("/"))

    return canonical(a) == canonical(b)


def _download_folder(problems: _Problems, path: str, value: object) -> Path | None:
    if not isinstance(value, str) or not value.startswith("/"):
        problems.add(path, f"must be an absolute path (starting with /), got {_show(value)}")
        return None
    if "\0" in value:
        problems.add(path, "must not contain a NUL character")
        return None
    # normpath keeps a leading '//' (POSIX leaves it implementation-defined; on Linux it is '/').
    normal = "/" + os.path.normpath(value).lstrip("/")
    if normal == "/":
        problems.add(path, f"must not be the root directory, got {_show(value)}")
        return None
    return Path(normal)


def _aws_region(problems: _Problems, path: str, value: object) -> str | None:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        problems.add(
            path,
            "must be an AWS region name such as 'eu-west-1' (lower-case letters, digits and '-'), "
            f"got {_show(value)}",
        )
        return None
    return value


def _bucket_names(problems: _Problems, path: str, value: object) -> tuple[str, ...] | None:
    if isinstance(value, Mapping):
        problems.add(path, f"must be a bucket name or a list of bucket names, got {_show(value)}")
        return None
    if not isinstance(value, list):
        return (str(value),) if _bucket_name(problems, path, value) else None
    if not value:
        problems.add(path, "must list at least one bucket; leave it unset to accept every bucket")
        return None
    ok = [_bucket_name(problems, f"{path}[{index}]", item) for index, item in enumerate(value)]
    if not all(ok):
        return None
    return tuple(dict.fromkeys(value))  # duplicates are harmless: drop them, keep the order


def _bucket_name(problems: _Problems, path: str, value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems.add(path, f"must be a bucket name, got the number {_show(value)}; quote it")
        return False
    if not isinstance(value, str):
        problems.add(path, f"must be a bucket name, got {_show(value)}")
        return False
    if not value:
        problems.add(path, "must be a bucket name, got an empty string")
        return False
    if "/" in value:
        problems.add(
            path, f"must be a bucket name only, without s3:// or a '/', got {_show(value)}"
        )
        return False
    if any(ch.isspace() for ch in value):
        problems.add(path, f"must not contain whitespace, got {_show(value)}")
        return False
    return True


def _int_range(
    low: int, high: int, *, note: str = ""
) -> Callable[[_Problems, str, object], int | None]:
    suffix = f" ({note})" if note else ""

    def check(problems: _Problems, path: str, value: object) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.add(
                path,
                f"must be an integer from {low} to {high}{suffix}, got {_show(value)}"
                + _quoted_number_hint(value),
            )
            return None
        return value

    return check


def _workers(problems: _Problems, path: str, value: object) -> int | str | None:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        problems.add(
            path,
            f"must be auto or an integer from 1 to {MAX_WORKERS}, got {_show(value)}"
            + _quoted_number_hint(value),
        )
        return None
    return value


def _seconds_range(low: float, high: float) -> Callable[[_Problems, str, object], float | None]:
    def check(problems: _Problems, path: str, value: object) -> float | None:
        number = _number(value)
        if number is None or not low <= number <= high:
            problems.add(
                path,
                f"must be a number of seconds from {low:g} to {high:g}, got {_show(value)}"
                + _quoted_number_hint(value),
            )
            return None
        return number

    return check


def _number(value: object) -> float | None:
    """A finite int or float as float; None for anything else (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _retry(problems: _Problems, path: str, value: object) -> RetryConfig | None:
    section = _section(problems, path, value)
    if section is None:
        return None
    default = RetryConfig()
    before = len(problems.lines)

    attempts = default.max_attempts
    attempts_raw = section.get("max_attempts")
    if attempts_raw is not None:
        checked = _int_range(1, 1000)(problems, f"{path}.max_attempts", attempts_raw)
        attempts = attempts if checked is None else checked

    base_raw = section.get("base_delay_seconds")
    base = default.base_delay_seconds
    base_ok = True
    if base_raw is not None:
        number = _number(base_raw)
        if number is None or not 0 < number <= _MAX_VISIBILITY_SECONDS:
            base_ok = False
            problems.add(
                f"{path}.base_delay_seconds",
                f"must be a number of seconds > 0 and <= {_MAX_VISIBILITY_SECONDS}, "
                f"got {_show(base_raw)}" + _quoted_number_hint(base_raw),
            )
        else:
            base = number

    max_raw = section.get("max_delay_seconds")
    top = default.max_delay_seconds
    if max_raw is not None:
        number = _number(max_raw)
        if number is None or not 0 < number <= _MAX_VISIBILITY_SECONDS:
            problems.add(
                f"{path}.max_delay_seconds",
                f"must be a number of seconds > 0 and <= {_MAX_VISIBILITY_SECONDS} "
                f"(12 hours, the SQS visibility limit), got {_show(max_raw)}"
                + _quoted_number_hint(max_raw),
            )
        elif base_ok and number < base:
            problems.add(
                f"{path}.max_delay_seconds",
                f"must be >= {path}.base_delay_seconds ({base!r}), got {_show(max_raw)}",
            )
        else:
            top = number
    elif base_ok and base > top:
        problems.add(
            f"{path}.base_delay_seconds",
            f"must be <= {path}.max_delay_seconds ({top!r}, the default), got {_show(base_raw)}; "
            f"set {path}.max_delay_seconds too",
        )

    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["retry"])
    if len(problems.lines) != before:
        return None
    return RetryConfig(
        max_attempts=attempts,
        base_delay_seconds=base,
        max_delay_seconds=top,
    )


def _key_decoding(problems: _Problems, path: str, value: object) -> KeyDecodingPolicy | None:
    section = _section(problems, path, value)
    if section is None:
        return None
    before = len(problems.lines)
    chosen: dict[str, KeyDecoding] = {}
    for name in _SECTION_KEYS["key_decoding"]:
        raw = section.get(name)
        if raw is None:
            continue
        if isinstance(raw, str) and raw.lower() in ("url", "none"):
            chosen[name] = KeyDecoding(raw.lower())
            continue
        hint = "; write none (not false, no or off)" if isinstance(raw, bool) else ""
        problems.add(f"{path}.{name}", f"must be 'url' or 'none', got {_show(raw)}{hint}")
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["key_decoding"])
    if len(problems.lines) != before:
        return None
    return KeyDecodingPolicy(**chosen)


def _section(problems: _Problems, path: str, value: object) -> Mapping[Any, Any] | None:
    if not isinstance(value, Mapping):
        keys = ", ".join(_SECTION_KEYS[path])
        problems.add(path, f"must be a mapping with the keys {keys}, got {_show(value)}")
        return None
    return value


def _mode(required: int, required_text: str) -> Callable[[_Problems, str, object], int | None]:
    def check(problems: _Problems, path: str, value: object) -> int | None:
        mode: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        elif isinstance(value, str) and (match := _OCTAL_MODE.fullmatch(value)):
            mode = int(match.group(1), 8)
        if mode is None or not 0 <= mode <= 0o777:
            hint = ""
            if isinstance(value, int) and not isinstance(value, bool) and _octal_digits(value):
                hint = f" ({value} is read as decimal; write 0{value} or '0{value}')"
            problems.add(
                path,
                f"must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
                f"got {_show(value)}{hint}",
            )
            return None
        if mode & required != required:
            problems.add(
                path,
                f"must include the owner's {required_text} permission (0{required:03o}), "
                f"got 0{mode:03o}",
            )
            return None
        return mode

    return check


def _octal_digits(value: int) -> bool:
    """True for a decimal int such as 640 that was surely meant as the octal mode 0640."""
    return 0o777 < value <= 777 and set(str(value)) <= set("01234567")


def _log_level(problems: _Problems, path: str, value: object) -> str | None:
    if isinstance(value, str) and value.lower() in _LOG_LEVELS:
        return value.lower()
    suggestion = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), _LOG_LEVELS, n=1, cutoff=0.6)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    problems.add(path, f"must be one of {', '.join(_LOG_LEVELS)}, got {_show(value)}{suggestion}")
    return None


# ---- post-download commands, routes, delete mirroring, metrics --------------------------------


def _mapping(
    problems: _Problems, path: str, value: object, keys: tuple[str, ...], *, hint: str = ""
) -> Mapping[Any, Any] | None:
    if not isinstance(value, Mapping):
        problems.add(
            path, f"must be a mapping with the keys {', '.join(keys)}{hint}, got {_show(value)}"
        )
        return None
    return value


def _command(problems: _Problems, path: str, value: object) -> CommandConfig | None:
    section = _mapping(problems, path, value, _SECTION_KEYS["on_download"])
    if section is None:
        return None
    before = len(problems.lines)
    command: tuple[str, ...] | None = None
    raw = section.get("command")
    if raw is None:
        problems.add(f"{path}.command", "required key is missing")
    else:
        command = _argv(problems, f"{path}.command", raw)
    timeout = DEFAULT_COMMAND_TIMEOUT_SECONDS
    raw_timeout = section.get("timeout_seconds")
    if raw_timeout is not None:
        checked = _seconds_range(1.0, _MAX_COMMAND_TIMEOUT_SECONDS)(
            problems, f"{path}.timeout_seconds", raw_timeout
        )
        timeout = timeout if checked is None else checked
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["on_download"])
    if len(problems.lines) != before or command is None:
        return None
    return CommandConfig(command=command, timeout_seconds=timeout)


def _argv(problems: _Problems, path: str, value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        problems.add(
            path,
            "must be a list of arguments such as [/usr/local/bin/ingest, --quiet]; no shell is "
            f"used, so one string is not split into words, got {_show(value)}",
        )
        return None
    if not isinstance(value, list):
        problems.add(path, f"must be a list of arguments, got {_show(value)}")
        return None
    if not value:
        problems.add(path, "must list at least the program to run")
        return None
    ok = True
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if isinstance(item, int | float) and not isinstance(item, bool):
            problems.add(where, f"must be a string, got the number {_show(item)}; quote it")
            ok = False
        elif not isinstance(item, str):
            problems.add(where, f"must be a string, got {_show(item)}")
            ok = False
        elif not item:
            problems.add(where, "must not be an empty string")
            ok = False
        elif "\0" in item:
            problems.add(where, "must not contain a NUL character")
            ok = False
        elif index == 0 and not item.startswith("/"):
            problems.add(
                where,
                "must be the absolute path of the program (starting with /); commands are not "
                f"looked up in PATH, got {_show(item)}",
            )
            ok = False
    return tuple(value) if ok else None


def _routes(problems: _Problems, path: str, value: object) -> tuple[RouteConfig, ...] | None:
    if not isinstance(value, list):
        problems.add(
            path,
            "must be a list of routes, each a mapping with download_folder and any of bucket, "
            f"prefix, glob, strip_prefix, on_download, got {_show(value)}",
        )
        return None
    if not value:
        problems.add(
            path, "must list at least one route; leave it unset to download into download_folder"
        )
        return None
    if len(value) > _MAX_ROUTES:
        problems.add(path, f"must list at most {_MAX_ROUTES} routes, got {len(value)}")
        return None
    before = len(problems.lines)
    routes = [_route(problems, f"{path}[{index}]", item) for index, item in enumerate(value)]
    if len(problems.lines) != before:
        return None
    checked = [route for route in routes if route is not None]
    _overlapping_folders(problems, path, checked)
    _unreachable_routes(problems, path, checked)
    if len(problems.lines) != before:
        return None
    return tuple(checked)


def _route(problems: _Problems, path: str, value: object) -> RouteConfig | None:
    if not isinstance(value, Mapping):
        problems.add(
            path,
            "must be a mapping with download_folder and any of bucket, prefix, glob, "
            f"strip_prefix, on_download, got {_show(value)}",
        )
        return None
    before = len(problems.lines)
    folder: Path | None = None
    raw_folder = value.get("download_folder")
    if raw_folder is None:
        problems.add(f"{path}.download_folder", "required key is missing")
    else:
        folder = _download_folder(problems, f"{path}.download_folder", raw_folder)
    bucket: str | None = None
    raw_bucket = value.get("bucket")
    if raw_bucket is not None and _bucket_name(problems, f"{path}.bucket", raw_bucket):
        bucket = str(raw_bucket)
    prefix = _key_pattern(problems, f"{path}.prefix", value.get("prefix"))
    glob = _key_pattern(problems, f"{path}.glob", value.get("glob"))
    strip = False
    raw_strip = value.get("strip_prefix")
    if raw_strip is not None:
        if not isinstance(raw_strip, bool):
            problems.add(f"{path}.strip_prefix", f"must be true or false, got {_show(raw_strip)}")
        elif raw_strip and value.get("prefix") is None:
            problems.add(f"{path}.strip_prefix", f"needs {path}.prefix: the prefix to strip")
        elif raw_strip and prefix is not None and not prefix.endswith("/"):
            # Only whole folders are stripped: 'in' from 'inbox/a' would leave 'box/a', and
            # 'inbox' from 'inbox/a' would leave '/a', an absolute path that is refused.
            problems.add(
                f"{path}.prefix",
                f"must end with '/' when strip_prefix is true (only whole folders are "
                f"stripped), got {_show(prefix)}",
            )
        else:
            strip = raw_strip
    after_download = None
    if value.get("after_download") is not None:
        after_download = _choice(AFTER_DOWNLOAD_CHOICES)(
            problems, f"{path}.after_download", value["after_download"]
        )
    on_download = None
    raw_command = value.get("on_download")
    if raw_command is not None:
        on_download = _command(problems, f"{path}.on_download", raw_command)
    access = _bucket_access(problems, path, value)
    _unknown_keys(problems, value, f"{path}.", _ROUTE_KEYS)
    if len(problems.lines) != before or folder is None:
        return None
    return RouteConfig(
        download_folder=folder,
        bucket=bucket,
        prefix=prefix,
        glob=glob,
        strip_prefix=strip,
        after_download=after_download,
        on_download=on_download,
        **access,
    )


_ACCESS_KEYS = ("aws", "expected_bucket_owner", "request_payer", "sse_customer_key_file")


def _bucket_access(problems: _Problems, path: str, value: Mapping[Any, Any]) -> dict[str, Any]:
    """A route's own identity and guards: they belong to a bucket, so the route must name one."""
    checks: dict[str, _Check] = {
        "aws": _role_section,
        "expected_bucket_owner": _account_id,
        "request_payer": _request_payer,
        "sse_customer_key_file": _absolute_file,
    }
    found: dict[str, Any] = {}
    for key, check in checks.items():
        raw = value.get(key)
        if raw is not None:
            found[key] = check(problems, f"{path}.{key}", raw)
    if found and value.get("bucket") is None:
        problems.add(
            f"{path}.{next(iter(found))}",
            f"needs {path}.bucket: an identity or a guard belongs to one bucket (set it at the "
            "top level to apply it to every bucket)",
        )
    return found


def _key_pattern(problems: _Problems, path: str, value: object) -> str | None:
    """A route's prefix or glob: compared with the decoded key, which never starts with '/'."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems.add(path, f"must be a string, got the number {_show(value)}; quote it")
        return None
    if not isinstance(value, str) or not value:
        problems.add(path, f"must be a non-empty string, got {_show(value)}")
        return None
    if "\0" in value:
        problems.add(path, "must not contain a NUL character")
        return None
    if value.startswith("/"):
        problems.add(
            path,
            "must not start with '/': keys are matched as decoded, without a leading '/' (a key "
            f"that has one is refused as unsafe), got {_show(value)}",
        )
        return None
    return value


def _overlapping_folders(problems: _Problems, path: str, routes: list[RouteConfig]) -> None:
    """Routes may share one folder, but no route's folder may lie inside another's.

    Each folder has its own temp folder and start-up sweep, and keys are only kept out of the
    temp folder at the top of their own route's folder: a key of the outer route could reach
    into the inner folder's temp folder, and one file could be claimed by two routes.
    """
    for later, route in enumerate(routes):
        for earlier in range(later):
            other = routes[earlier].download_folder
            folder = route.download_folder
            if other in folder.parents:
                relation = "is inside"
            elif folder in other.parents:
                relation = "contains"
            else:
                continue  # the same folder, or separate ones
            problems.add(
                f"{path}[{later}].download_folder",
                f"{folder} {relation} {path}[{earlier}].download_folder ({other}); route folders "
                "must be the same folder or separate ones, never one inside another",
            )
            break


def _covers(first: RouteConfig, later: RouteConfig) -> bool:
    """True when ``first`` surely takes every object ``later`` would match."""
    return (
        (first.bucket is None or first.bucket == later.bucket)
        and (
            first.prefix is None
            or (later.prefix is not None and later.prefix.startswith(first.prefix))
        )
        and (first.glob is None or first.glob == later.glob)
    )


def _unreachable_routes(problems: _Problems, path: str, routes: list[RouteConfig]) -> None:
    for later, route in enumerate(routes):
        for earlier in range(later):
            if _covers(routes[earlier], route):
                problems.add(
                    f"{path}[{later}]",
                    f"is never used: {path}[{earlier}] comes first and matches every object "
                    "this route matches (the first matching route wins)",
                )
                break


def _route_problems(problems: _Problems, data: Mapping[Any, Any], values: dict[str, Any]) -> None:
    """Checks that involve routes and other top-level keys."""
    routes: tuple[RouteConfig, ...] | None = values.get("routes")
    if data.get("routes") is None:
        if values.get("unrouted") == "dead_letter":
            problems.add("unrouted", "has no effect without routes; remove it or add routes")
        return
    if data.get("download_folder") is not None:
        problems.add(
            "download_folder",
            "is not used when routes is set: each route has its own download_folder; remove "
            "this key",
        )
    allowed: tuple[str, ...] | None = values.get("s3_bucket_name")
    _bucket_access_agrees(problems, routes or ())
    for index, route in enumerate(routes or ()):
        if allowed and route.bucket is not None and route.bucket not in allowed:
            problems.add(
                f"routes[{index}].bucket",
                f"{route.bucket!r} is not in s3_bucket_name, so this route would never be used",
            )


def _choice(choices: tuple[str, ...]) -> Callable[[_Problems, str, object], str | None]:
    def check(problems: _Problems, path: str, value: object) -> str | None:
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        suggestion = ""
        if isinstance(value, str):
            wanted = value.lower().replace("-", "_").replace(" ", "_")
            close = difflib.get_close_matches(wanted, choices, n=1, cutoff=0.6)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(path, f"must be one of {', '.join(choices)}, got {_show(value)}{suggestion}")
        return None

    return check


def _large_objects(problems: _Problems, path: str, value: object) -> LargeObjectsConfig | None:
    section = _section(problems, path, value)
    if section is None:
        return None
    checks = {
        "threshold_bytes": _int_range(
            MiB, S3_MAX_OBJECT_BYTES, note="5 TiB, the S3 maximum, fetches every object whole"
        ),
        "part_size_bytes": _int_range(
            MiB, S3_MAX_OBJECT_BYTES, note="1 MiB to 5 TiB; S3 serves any range, 8 MiB is usual"
        ),
        "concurrency": _int_range(1, 256),
    }
    values = _int_section(problems, path, section, checks, "large_objects")
    return None if values is None else LargeObjectsConfig(**values)


def _reconcile(problems: _Problems, path: str, value: object) -> ReconcileConfig | None:
    section = _mapping(
        problems,
        path,
        value,
        _SECTION_KEYS["reconcile"],
        hint=" (write {} for a pass every hour)",
    )
    if section is None:
        return None
    checks = {
        # A pass lists every object the config takes: more often than a minute is a listing
        # loop (S3 bills per LIST), and a week is the longest an operator should wait.
        "interval_seconds": _int_range(60, 7 * 24 * 3600, note="a minute to a week"),
        "workers": _int_range(1, 64),
        "min_age_seconds": _int_range(0, 7 * 24 * 3600),
    }
    values = _int_section(problems, path, section, checks, "reconcile")
    return None if values is None else ReconcileConfig(**values)


def _int_section(
    problems: _Problems,
    path: str,
    section: Mapping[Any, Any],
    checks: Mapping[str, Callable[[_Problems, str, object], int | None]],
    name: str,
) -> dict[str, int] | None:
    """Check a section of integer keys; the values given, or None if any was refused."""
    before = len(problems.lines)
    values: dict[str, int] = {}
    for key, check in checks.items():
        raw = section.get(key)
        checked = None if raw is None else check(problems, f"{path}.{key}", raw)
        if checked is not None:
            values[key] = checked
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS[name])
    return None if len(problems.lines) != before else values


def _metrics(problems: _Problems, path: str, value: object) -> MetricsConfig | None:
    section = _mapping(
        problems,
        path,
        value,
        _SECTION_KEYS["metrics"],
        hint=f" (write {{}} for the default, {DEFAULT_METRICS_LISTEN})",
    )
    if section is None:
        return None
    before = len(problems.lines)
    listen = DEFAULT_METRICS_LISTEN
    raw = section.get("listen")
    if raw is not None:
        problem = _listen_problem(raw)
        if problem is not None:
            problems.add(f"{path}.listen", problem)
        else:
            listen = str(raw)
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["metrics"])
    if len(problems.lines) != before:
        return None
    return MetricsConfig(listen=listen)


_LISTEN = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<port>[0-9]{1,5})")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _listen_problem(value: object) -> str | None:
    """Why ``value`` is not ``host:port``, ``[IPv6]:port`` or ``name:port``; None when it is."""
    expected = "must be host:port such as 127.0.0.1:9464, [::1]:9464 or localhost:9464"
    if not isinstance(value, str):
        hint = ""
        if isinstance(value, int) and not isinstance(value, bool):
            hint = f" (write 127.0.0.1:{value} for this host only)"
        return f"{expected}, got {_show(value)}{hint}"
    match = _LISTEN.fullmatch(value)
    if match is None:
        if "://" in value:
            return f"{expected}, without a scheme such as http://, got {_show(value)}"
        if _is_ipv6(value) or (not value.startswith("[") and _is_ipv6(value.rpartition(":")[0])):
            return f"{expected}; write an IPv6 address in brackets, got {_show(value)}"
        return f"{expected}, got {_show(value)}"
    host, port = match.group("host"), int(match.group("port"))
    if not 1 <= port <= 65535:
        return f"the port must be from 1 to 65535, got {_show(value)}"
    if not host:
        return (
            "must name the address to listen on: 127.0.0.1 for this host only, 0.0.0.0 for "
            f"every interface, got {_show(value)}"
        )
    if host.startswith("["):
        if not _is_ipv6(host[1:-1]):
            return f"{_show(host)} is not an IPv6 address, got {_show(value)}"
        return None
    if all(ch.isdigit() or ch == "." for ch in host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{_show(host)} is not an IPv4 address, got {_show(value)}"
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"{_show(host)} is not a host name or address, got {_show(value)}"
    return None


# ---- showing values in messages ---------------------------------------------------------------


def _show(value: object) -> str:
    """A value as it may appear in an error: short scalars as written, everything else described."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() < 128 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if len(value) > _MAX_SHOWN_CHARS:
            return f"a string of {len(value)} characters"
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def _quoted_number_hint(value: object) -> str:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (a string; remove the quotes)"
    return ""


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key if _PLAIN_KEY.fullmatch(key) else _show(key[:80])
    return _show(key)


# ---- identities, guards and the network (aws.py, buckets.py) ----------------------------------

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# STS: 2 to 64 characters of [\w+=,.@-]
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_MAX_ROLE_SECONDS = 43200  # STS: a role's maximum session is at most 12 hours
_MIN_ROLE_SECONDS = 900


def _role_arn(problems: _Problems, path: str, value: object) -> str | None:
    if isinstance(value, str) and _ROLE_ARN.fullmatch(value):
        return value
    problems.add(
        path,
        "must be an IAM role ARN such as arn:aws:iam::123456789012:role/s3sqsd-reader, "
        f"got {_show(value)}",
    )
    return None


def _role(problems: _Problems, path: str, section: Mapping[Any, Any]) -> RoleConfig | None:
    """The role keys of ``section`` (``aws`` flat, ``aws.sqs``, ``routes[i].aws``); None if
    none is set or one is refused."""
    names = _SECTION_KEYS["role"]
    if all(section.get(name) is None for name in names):
        return None
    before = len(problems.lines)
    raw_arn = section.get("role_arn")
    arn = None
    if raw_arn is None:
        given = next(name for name in names if section.get(name) is not None)
        problems.add(f"{path}.role_arn", f"required key is missing ({path}.{given} is set)")
    else:
        arn = _role_arn(problems, f"{path}.role_arn", raw_arn)
    external_id = _pattern(
        problems,
        f"{path}.external_id",
        section.get("external_id"),
        _EXTERNAL_ID,
        "2 to 1224 characters of letters, digits and +=,.@:/-",
    )
    session_name = _pattern(
        problems,
        f"{path}.role_session_name",
        section.get("role_session_name"),
        _SESSION_NAME,
        "2 to 64 characters of letters, digits and +=,.@-",
    )
    duration = 3600
    raw_duration = section.get("duration_seconds")
    if raw_duration is not None:
        checked = _int_range(
            _MIN_ROLE_SECONDS, _MAX_ROLE_SECONDS, note="the role's maximum session must allow it"
        )(problems, f"{path}.duration_seconds", raw_duration)
        duration = duration if checked is None else checked
    if len(problems.lines) != before or arn is None:
        return None
    return RoleConfig(
        role_arn=arn,
        external_id=external_id,
        role_session_name=session_name,
        duration_seconds=duration,
    )


def _pattern(
    problems: _Problems, path: str, value: object, pattern: re.Pattern[str], what: str
) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    problems.add(path, f"must be {what}, got {_show(value)}")
    return None


def _role_section(problems: _Problems, path: str, value: object) -> RoleConfig | None:
    """``routes[i].aws``: the route's bucket's role."""
    section = _mapping(problems, path, value, _SECTION_KEYS["role"])
    if section is None:
        return None
    before = len(problems.lines)
    role = _role(problems, path, section)
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["role"])
    if role is None and len(problems.lines) == before:
        problems.add(f"{path}.role_arn", "required key is missing")
    return None if len(problems.lines) != before else role


def _aws(problems: _Problems, path: str, value: object) -> AwsConfig | None:
    section = _mapping(problems, path, value, _SECTION_KEYS["aws"])
    if section is None:
        return None
    before = len(problems.lines)
    values: dict[str, Any] = {"role": _role(problems, path, section)}
    raw_sqs = section.get("sqs")
    if raw_sqs is not None:
        values["sqs_role"] = _role_section(problems, f"{path}.sqs", raw_sqs)
    checks: dict[str, _Check] = {
        "ca_bundle": _absolute_file,
        "proxy_url": _proxy_url,
        "proxy_ca_bundle": _absolute_file,
        "use_fips_endpoint": _boolean,
        "use_dualstack_endpoint": _boolean,
        "sts_regional_endpoints": _choice(STS_REGIONAL_CHOICES),
        "sts_endpoint_url": _endpoint_url,
    }
    for key, check in checks.items():
        raw = section.get(key)
        if raw is not None:
            values[key] = check(problems, f"{path}.{key}", raw)
    if values.get("proxy_ca_bundle") is not None and section.get("proxy_url") is None:
        problems.add(f"{path}.proxy_ca_bundle", f"needs {path}.proxy_url: the proxy it verifies")
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["aws"])
    if len(problems.lines) != before:
        return None
    return AwsConfig(**{key: item for key, item in values.items() if item is not None})


def _boolean(problems: _Problems, path: str, value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.add(path, f"must be true or false, got {_show(value)}")
    return None


def _proxy_url(problems: _Problems, path: str, value: object) -> str | None:
    """``http://host:port`` or ``https://host:port``, credentials allowed in the URL (they are
    never shown: only the scheme, host and port appear in messages)."""
    if isinstance(value, str) and "\0" not in value:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = urlsplit("")
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
    shown = "a value that is not a URL"
    if isinstance(value, str):
        parts = urlsplit(value)
        shown = repr(f"{parts.scheme}://{parts.hostname or ''}") if parts.scheme else shown
    problems.add(path, f"must be a proxy URL such as http://proxy.example:3128, got {shown}")
    return None


def _absolute_file(problems: _Problems, path: str, value: object) -> Path | None:
    """An absolute path; whether the file exists and who may read it is checked at start."""
    if not isinstance(value, str) or not value.startswith("/") or value.endswith("/"):
        problems.add(path, f"must be the absolute path of a file, got {_show(value)}")
        return None
    if "\0" in value:
        problems.add(path, "must not contain a NUL character")
        return None
    return Path(os.path.normpath(value))


def _account_id(problems: _Problems, path: str, value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        problems.add(
            path,
            f"must be a 12-digit AWS account id written as a string (quote it: leading zeros "
            f"count), got the number {_show(value)}",
        )
        return None
    if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value):
        return value
    problems.add(
        path, f"must be a 12-digit AWS account id such as '123456789012', got {_show(value)}"
    )
    return None


def _request_payer(problems: _Problems, path: str, value: object) -> str | None:
    if value == "requester":
        return "requester"
    problems.add(
        path,
        "must be 'requester' (this host pays for the requests and the transfer of a Requester "
        f"Pays bucket); leave it unset for other buckets, got {_show(value)}",
    )
    return None


def _bucket_access_agrees(problems: _Problems, routes: tuple[RouteConfig, ...]) -> None:
    """Routes naming one bucket must name one identity and the same guards: every call on a
    bucket (a GET, a listing, a delete) uses one client, whichever route took the object."""
    seen: dict[str, tuple[int, tuple[Any, ...]]] = {}
    for index, route in enumerate(routes):
        if route.bucket is None:
            continue
        access = (route.aws, route.guards)
        first = seen.setdefault(route.bucket, (index, access))
        if first[1] != access:
            problems.add(
                f"routes[{index}]",
                f"names bucket {route.bucket!r} with other aws, expected_bucket_owner, "
                f"request_payer or sse_customer_key_file settings than routes[{first[0]}]: "
                "one bucket has one identity and one set of guards; set them alike",
            )
