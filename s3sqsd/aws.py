"""The only place boto3 sessions and clients are made.

Clients are built once and shared by threads (boto3 clients are thread-safe; sessions are not).
Timeouts are explicit so no call can hang the daemon: the receive client's read timeout is longer
than the long poll, the control client (delete, visibility, dead-letter) fails fast.

Identities: the host's own credentials come from boto3's standard chain (environment, shared
files, instance or task role). A configured role (``aws.role_arn``, ``routes[i].aws``,
``aws.sqs``) is assumed from them with botocore's own ``AssumeRoleCredentialFetcher`` behind
``DeferredRefreshableCredentials``: botocore refreshes them before they expire, on whichever
thread needs them next, without a loop of ours (access.py says which call uses which identity).
Each refreshed set is registered with the log redactor as it arrives.

Guards: a bucket's ``expected_bucket_owner``, ``request_payer`` and SSE-C key are added to every
call on its client that accepts them (botocore's ``provide-client-params`` event, before
validation), so no call site can forget one; buckets.py picks the client by the call's bucket.

The network keys (``aws.ca_bundle``, ``proxy_url``, ``proxy_ca_bundle``, ``use_fips_endpoint``,
``use_dualstack_endpoint``, ``sts_regional_endpoints``) map to botocore's own options, on every
client: S3, SQS, and the STS client that assumes roles. Botocore's behaviour with them, checked
on 1.29 (Debian bookworm) and 1.44 and pinned by tests/unit/test_network.py:

- ``proxies`` given in the client's Config are used for every request of that client, and the
  environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) is then not read at all. Without
  them, botocore reads the environment once per client, for the client's endpoint.
- The FIPS and dual-stack flags, and ``sts_regional_endpoints``, change only endpoints that
  botocore resolves: a client given an endpoint URL ignores them.
- ``legacy`` STS is the global ``sts.amazonaws.com`` only in the regions that had it before
  regional STS existed (botocore's ruleset lists them); other regions, and FIPS, stay regional.

A CA bundle that cannot be read, or holds no certificate, stops the daemon at start
(``ca_bundle_problems``); ``s3sqsd check`` shows it as a FAIL.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import socket
import ssl
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import NoCredentialsError, NoRegionError

from s3sqsd.access import AccessPlan, BucketAccess, plan_access
from s3sqsd.buckets import BucketClients
from s3sqsd.config import (
    LARGE_SLOTS,
    MAX_POLLERS,
    MAX_WAIT_TIME_SECONDS,
    MAX_WORKERS,
    AwsConfig,
    Config,
    ReconcileConfig,
    RoleConfig,
)
from s3sqsd.errors import ConfigError
from s3sqsd.logs import add_secrets
from s3sqsd.sqs import MAX_DELETE_BATCHES
from s3sqsd.timestamps import parse_timestamp

USER_AGENT = "s3sqsd"
SSE_C_KEY_BYTES = 32  # AES-256
# The SQS control client's connections besides the delete batches: the loop thread's calls
# (visibility changes and renewals, dead-letter sends, the queue depth), one at a time, and room.
CONTROL_CALLS = 4
_STS_OPTIONS: dict[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 10,
    "retries": {"mode": "standard", "total_max_attempts": 3},
}


@dataclass(frozen=True, slots=True)
class Clients:
    """The three clients the daemon uses. ``s3`` picks each bucket's client (buckets.py)."""

    s3: Any
    sqs_receive: Any  # used only by the receiving thread, for long polls
    sqs_control: Any  # deletes, visibility changes, dead-letter sends, queue attributes
    session: Any = None
    plan: AccessPlan | None = None  # which identity and guards each bucket and the queue use

    def credential_values(self) -> tuple[str, ...]:
        """The resolved credentials' values, so the logs can blank them out; () if none."""
        if self.session is None:
            return ()
        try:
            credentials = self.session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials else None
        except Exception:  # noqa: BLE001 - resolution errors surface on the first AWS call
            return ()
        if frozen is None:
            return ()
        return tuple(v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v)


def endpoint_for(
    service: str, configured: str | None, *, environ: Mapping[str, str] | None = None
) -> str | None:
    """The endpoint for ``service``: the config's, else ``AWS_ENDPOINT_URL_<SERVICE>``, else
    ``AWS_ENDPOINT_URL``, else None (AWS).

    Recent botocore reads these variables itself; Debian bookworm's 1.26 does not, so we read
    them here and behave the same on both.
    """
    if configured:
        return configured
    env = os.environ if environ is None else environ
    return env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL") or None


class Aws:
    """The config's way to AWS: the host's session, each role's session (built once, refreshed
    by botocore), the endpoints and the network options; it makes every client.

    ``environ``: where ``AWS_ENDPOINT_URL*`` are read (tests pass their own)."""

    def __init__(self, config: Config, *, environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._network = config.aws
        self.plan: AccessPlan = plan_access(config)
        self.s3_endpoint = endpoint_for("s3", config.s3_endpoint, environ=environ)
        self.sqs_endpoint = endpoint_for("sqs", config.sqs_endpoint, environ=environ)
        self.sts_endpoint = endpoint_for(
            "sts", config.aws.sts_endpoint_url or config.endpoint_url, environ=environ
        )
        self._botocore = self._botocore_session()
        self.session = boto3.session.Session(
            botocore_session=self._botocore, region_name=config.region
        )
        self._sessions: dict[RoleConfig, Any] = {}
        self._keys: dict[str, bytes] = {}
        add_secrets(*proxy_secrets(config.aws.proxy_url))

    # ---- identities ------------------------------------------------------------------------

    def session_for(self, role: RoleConfig | None) -> Any:
        """The boto3 session of ``role`` (None: the host's own credentials)."""
        if role is None:
            return self.session
        if role not in self._sessions:
            self._sessions[role] = self._assumed(role)
        return self._sessions[role]

    def _botocore_session(self) -> Any:
        session = botocore.session.get_session()
        # STS: the regional endpoint (what AWS recommends and recent botocore does anyway), or
        # the global one a network's allow-list may still name.
        session.set_config_variable("sts_regional_endpoints", self._network.sts_regional_endpoints)
        # S3's two timestamp forms without dateutil (timestamps.py): a GET's Last-Modified,
        # a listing's LastModified per key. Clients made from this session parse with it.
        session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp
        )
        return session

    def _assumed(self, role: RoleConfig) -> Any:
        """A session whose credentials are ``role``'s, assumed from the host's own and
        refreshed by botocore before they expire (``DeferredRefreshableCredentials``)."""
        extra: dict[str, Any] = {
            "RoleSessionName": role.role_session_name or default_session_name(),
            "DurationSeconds": role.duration_seconds,
        }
        if role.external_id:
            extra["ExternalId"] = role.external_id
        source = self.session

        def fetch() -> Mapping[str, Any]:
            credentials = source.get_credentials()
            if credentials is None:
                raise NoCredentialsError()
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=self._sts_creator(),
                source_credentials=credentials,
                role_arn=role.role_arn,
                extra_args=extra,
            )
            values = fetcher.fetch_credentials()
            add_secrets(values.get("secret_key"), values.get("token"), rotating=True)
            return values

        credentials = DeferredRefreshableCredentials(refresh_using=fetch, method="assume-role")
        botocore_session = self._botocore_session()
        botocore_session.register_component(
            "credential_provider", CredentialResolver(providers=[_Given(credentials)])
        )
        return boto3.session.Session(
            botocore_session=botocore_session, region_name=self._config.region
        )

    def _sts_creator(self) -> Callable[..., Any]:
        """What AssumeRoleCredentialFetcher calls to make its STS client (with the source
        credentials as keyword arguments): our endpoint, network options and timeouts."""
        return functools.partial(
            self.session.client,
            endpoint_url=self.sts_endpoint,
            verify=self._verify(),
            config=self._boto_config(_STS_OPTIONS),
        )

    def sts_client(self) -> Any:
        """The STS client roles are assumed with (the host's credentials): ``s3sqsd check``
        shows its endpoint."""
        return self._sts_creator()("sts")

    def default_ca_bundle(self) -> str | None:
        """The CA bundle botocore uses without ``aws.ca_bundle`` (``AWS_CA_BUNDLE``, or
        ``ca_bundle`` in the AWS config file); None: its built-in default."""
        value = self._botocore.get_config_variable("ca_bundle")
        return str(value) if value else None

    def caller_identity(self, role: RoleConfig | None, **options: Any) -> str:
        """The ARN ``sts:GetCallerIdentity`` answers for ``role``'s credentials (assuming the
        role first): what ``s3sqsd check`` shows. Raises what botocore raises."""
        sts = self.client("sts", role=role, **options)
        return str(sts.get_caller_identity()["Arn"])

    # ---- clients ---------------------------------------------------------------------------

    def client(self, service: str, *, role: RoleConfig | None = None, **options: Any) -> Any:
        """A client of ``role``'s session with our user agent, explicit timeouts (``options``:
        botocore Config options) and the network options; a missing region is a config error.

        S3-compatible stores and emulators usually need path-style addressing (Vector's
        default), so a custom S3 endpoint gets it.
        """
        endpoint = {"s3": self.s3_endpoint, "sqs": self.sqs_endpoint, "sts": self.sts_endpoint}[
            service
        ]
        if service == "s3" and endpoint:
            options.setdefault("s3", {"addressing_style": "path"})
        try:
            return self.session_for(role).client(
                service,
                endpoint_url=endpoint,
                verify=self._verify(),
                config=self._boto_config(options),
            )
        except NoRegionError as exc:
            raise ConfigError(
                "aws_region: no region configured, none in the queue URL and none in the "
                "environment (AWS_REGION / AWS_DEFAULT_REGION)"
            ) from exc

    def s3(self, **options: Any) -> BucketClients:
        """Every bucket's S3 client, each with its identity and guards, behind one object."""
        made: dict[BucketAccess, Any] = {}

        def for_access(access: BucketAccess) -> Any:
            if access not in made:
                made[access] = self.client("s3", role=access.role, **options)
                self._guard(made[access], access)
            return made[access]

        return BucketClients(
            default=for_access(self.plan.default),
            by_bucket={name: for_access(a) for name, a in self.plan.buckets.items()},
        )

    def _guard(self, s3: Any, access: BucketAccess) -> None:
        """Add the bucket's guards to every call that accepts them (see the module docstring)."""
        guards = access.guards
        wanted: dict[str, Any] = {}
        if guards.expected_bucket_owner:
            wanted["ExpectedBucketOwner"] = guards.expected_bucket_owner
        if guards.request_payer:
            wanted["RequestPayer"] = guards.request_payer
        if guards.sse_customer_key_file is not None:
            wanted["SSECustomerAlgorithm"] = "AES256"
            # botocore base64-encodes the key and adds its MD5 (its sse_md5 handler).
            wanted["SSECustomerKey"] = self.sse_key(guards.sse_customer_key_file)
        if wanted:
            s3.meta.events.register("provide-client-params.s3", _GuardParams(wanted))

    def sse_key(self, path: Path) -> bytes:
        """The SSE-C key in ``path``, read once (see ``read_sse_key``)."""
        if str(path) not in self._keys:
            self._keys[str(path)] = read_sse_key(path)
        return self._keys[str(path)]

    def _verify(self) -> str | None:
        return None if self._network.ca_bundle is None else str(self._network.ca_bundle)

    def _boto_config(self, options: Mapping[str, Any]) -> BotoConfig:
        return BotoConfig(user_agent_extra=USER_AGENT, **network_options(self._network), **options)


def proxy_secrets(proxy_url: str | None) -> tuple[str, ...]:
    """The password (as written and decoded) and user:password of ``proxy_url``, for the log
    redactor; () without one."""
    if not proxy_url:
        return ()
    parts = urlsplit(proxy_url)
    if not parts.password:
        return ()
    userinfo = parts.netloc.rpartition("@")[0]
    return tuple(dict.fromkeys((parts.password, unquote(parts.password), userinfo)))


def shown_proxy(proxy_url: str) -> str:
    """``proxy_url`` without its user and password: scheme, host and port."""
    parts = urlsplit(proxy_url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    credentials = " (with credentials)" if parts.username or parts.password else ""
    return f"{parts.scheme}://{host}{port}{credentials}"


def ca_bundle_problems(aws: AwsConfig) -> list[str]:
    """Why ``aws.ca_bundle`` or ``aws.proxy_ca_bundle`` cannot be used, one line each naming the
    key and the file; [] when both can (or are unset). Each must be a readable file of PEM
    certificates, loaded here as botocore will load it."""
    problems = []
    for name, path in (
        ("aws.ca_bundle", aws.ca_bundle),
        ("aws.proxy_ca_bundle", aws.proxy_ca_bundle),
    ):
        if path is None:
            continue
        try:
            ssl.create_default_context(cafile=str(path))
        except ssl.SSLError as exc:
            problems.append(f"{name}: {path}: holds no usable PEM certificate ({exc.reason})")
        except OSError as exc:
            problems.append(f"{name}: {path}: cannot be read ({exc.strerror})")
    return problems


def resolved_endpoint(client: Any, operation: str, params: Mapping[str, Any] | None = None) -> str:
    """Where ``client`` sends ``operation`` (with ``params``): the answer of botocore's endpoint
    ruleset, which applies the FIPS, dual-stack and STS flags (``meta.endpoint_url`` does not
    always: S3 in us-east-1 with FIPS). Local, no request is made. Botocore 1.28+ has the
    resolver (a private attribute, pinned by tests/unit/test_network.py); failing that, the
    client's endpoint."""
    resolver = getattr(client, "_ruleset_resolver", None)
    try:
        model = client.meta.service_model.operation_model(operation)
        endpoint = resolver.construct_endpoint(model, dict(params or {}), {}) if resolver else None
    except Exception:  # noqa: BLE001 - only a description; the client's own URL will do
        endpoint = None
    if endpoint is not None:
        return str(endpoint.url)
    return str(client.meta.endpoint_url)


def network_options(aws: AwsConfig) -> dict[str, Any]:
    """The ``aws:`` network keys as botocore Config options (``ca_bundle`` is ``verify``)."""
    options: dict[str, Any] = {}
    if aws.proxy_url:
        options["proxies"] = {"http": aws.proxy_url, "https": aws.proxy_url}
        if aws.proxy_ca_bundle is not None:
            options["proxies_config"] = {"proxy_ca_bundle": str(aws.proxy_ca_bundle)}
    if aws.use_fips_endpoint:
        options["use_fips_endpoint"] = True
    if aws.use_dualstack_endpoint:
        options["use_dualstack_endpoint"] = True
    return options


class _Given(CredentialProvider):  # type: ignore[misc]
    """A provider that answers with credentials made already (the assumed role's)."""

    METHOD = "assume-role"
    CANONICAL_NAME = "s3sqsd-assume-role"

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Any:
        return self._credentials


class _GuardParams:
    """``provide-client-params`` handler: the guards each operation's input accepts, unless the
    call set them itself."""

    def __init__(self, wanted: Mapping[str, Any]) -> None:
        self._wanted = dict(wanted)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        shape = model.input_shape
        members = shape.members if shape is not None else {}
        for name, value in self._wanted.items():
            if name in members and name not in params:
                params[name] = value


def default_session_name() -> str:
    """``s3sqsd-<host name>``, cut to what STS allows (2 to 64 of ``[\\w+=,.@-]``)."""
    host = "".join(ch if ch.isalnum() or ch in "+=,.@-_" else "-" for ch in socket.gethostname())
    return f"s3sqsd-{host}"[:64]


def read_sse_key(path: Path) -> bytes:
    """The 32-byte SSE-C key in ``path``: the raw bytes, or their base64 on one line.

    The file must be readable by the service only (no group or other permission bits: systemd's
    ``LoadCredential=`` makes such a file). Problems are ConfigErrors that name the key and the
    file, never a byte of its content.
    """
    where = f"sse_customer_key_file: {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"{where}: must be readable by the service only, is mode "
                f"{stat.S_IMODE(info.st_mode):04o}; make it 0400 (or load it with systemd's "
                "LoadCredential=)"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(data) == SSE_C_KEY_BYTES:
        key = data
    else:
        try:
            key = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) != SSE_C_KEY_BYTES:
        raise ConfigError(
            f"{where}: must hold a 256-bit key: 32 bytes, or their base64 (44 characters) on "
            f"one line; the file has {len(data)} bytes"
        )
    add_secrets(base64.b64encode(key).decode(), key.hex(), key.decode("latin-1"))
    return key


def s3_pool_size(config: Config) -> int:
    """Connections the S3 client keeps for reuse: one per thread that may call S3 at once.

    urllib3 (botocore's pool is not blocking) opens a connection for every thread that finds
    the pool empty, and closes the ones given back to a full pool ("Connection pool is full,
    discarding connection"): a pool smaller than the threads means a new TCP and TLS handshake
    per request for the excess. The client is built once and a reload may raise ``workers``
    or ``max_workers`` up to ``MAX_WORKERS``, so it is sized for that; it costs nothing until
    used (urllib3 opens connections only as threads need them). The threads: the small lane's
    slots, the large lane's (``LARGE_SLOTS``; each does its HEAD and the reads of its ranges
    on the part threads, ``large_objects.concurrency``), and a reconcile pass's download
    threads and lister.
    """
    reconcile = config.reconcile.workers if config.reconcile else ReconcileConfig().workers
    return MAX_WORKERS + LARGE_SLOTS + config.large_objects.concurrency + reconcile + 1


def make_clients(config: Config, *, environ: Mapping[str, str] | None = None) -> Clients:
    """Build the daemon's S3 and SQS clients. An unusable CA bundle is a ConfigError."""
    problems = ca_bundle_problems(config.aws)
    if problems:
        raise ConfigError(problems)
    aws = Aws(config, environ=environ)
    s3 = aws.s3(
        connect_timeout=3,
        read_timeout=60,
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=s3_pool_size(config),
    )
    sqs_role = aws.plan.sqs_role
    sqs_receive = aws.client(
        "sqs",
        role=sqs_role,
        connect_timeout=3,
        # Longer than the longest long poll, or every idle poll would time out: the longest
        # SQS allows, not the configured one, which a reload may raise.
        read_timeout=MAX_WAIT_TIME_SECONDS + 10,
        # The receive loop has its own backoff and logs state changes itself: one attempt.
        retries={"mode": "standard", "total_max_attempts": 1},
        # One connection per receiver thread (``workers: auto`` adds pollers as it grows, and
        # a reload may raise them): a smaller pool would discard a connection per receive.
        max_pool_connections=MAX_POLLERS,
    )
    sqs_control = aws.client(
        "sqs",
        role=sqs_role,
        connect_timeout=3,
        # The loop thread makes these calls: fail fast (at most 2 attempts of 3 s connect +
        # 5 s read, well inside the unit's WatchdogSec=30s) and let the loop retry next pass.
        read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 2},
        # The delete batches in flight at once, and the loop's own calls besides them.
        max_pool_connections=MAX_DELETE_BATCHES + CONTROL_CALLS,
    )
    return Clients(
        s3=s3,
        sqs_receive=sqs_receive,
        sqs_control=sqs_control,
        session=aws.session,
        plan=aws.plan,
    )
