"""The configuration's types: frozen dataclasses, their defaults, limits and choices.

TYPES AND SIGNATURES ABOVE THE LINE BELOW ARE THE CONTRACT OTHER MODULES USE, with
``load_config`` (load.py) and ``parse_config`` (parse.py); they import all of them from
``s3sqsd.config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from s3sqsd.backoff import SQS_MAX_VISIBILITY_SECONDS
from s3sqsd.config.urls import _region_from_queue_url
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
    """What is sent with every S3 call to one bucket (s3sqsd/aws.py and buckets.py add it).

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
    keys map to botocore's own options (s3sqsd/aws.py): ``ca_bundle`` (``verify``),
    ``proxy_url`` and ``proxy_ca_bundle`` (``proxies``, ``proxies_config``),
    ``use_fips_endpoint``, ``use_dualstack_endpoint``, and ``sts_regional_endpoints`` for the
    STS client that assumes roles; ``sts_endpoint_url`` points STS elsewhere (a VPC endpoint,
    an emulator).
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
    value was validated when the config was read (``_listen_problem``, sections.py)."""
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
    """The validated configuration. Nothing past s3sqsd/config/ sees the raw YAML."""

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


# ---- implementation below -------------------------------------------------------------------

# Limits that come from SQS itself.
_MAX_WAIT_TIME_SECONDS = 20  # ReceiveMessage long-poll maximum
MAX_WAIT_TIME_SECONDS = _MAX_WAIT_TIME_SECONDS  # what a reload may raise wait_time_seconds to
MAX_WORKERS = 256  # what a reload may raise workers (and max_workers) to
# The most receiver threads: the ``pollers`` key's bound, and what ``workers: auto`` reaches at
# ``MAX_WORKERS`` (one per 8 slots, ``worker.concurrency.SLOTS_PER_POLLER``).
MAX_POLLERS = 32
_MAX_VISIBILITY_SECONDS = SQS_MAX_VISIBILITY_SECONDS  # ChangeMessageVisibility maximum: 12 hours
