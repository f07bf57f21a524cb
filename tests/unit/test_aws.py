"""Client construction: endpoint precedence and a missing region as a config error."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3sqsd.aws import endpoint_for, make_clients, s3_pool_size
from s3sqsd.config import LARGE_SLOTS, Config, ReconcileConfig
from s3sqsd.errors import ConfigError
from s3sqsd.sqs import MAX_DELETE_BATCHES
from s3sqsd.worker.concurrency import pollers_for


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ("http://cfg", {"AWS_ENDPOINT_URL": "http://env"}, "http://cfg"),
        (None, {"AWS_ENDPOINT_URL_S3": "http://s3", "AWS_ENDPOINT_URL": "http://env"}, "http://s3"),
        (None, {"AWS_ENDPOINT_URL": "http://env"}, "http://env"),
        (None, {"AWS_ENDPOINT_URL_SQS": "http://sqs"}, None),  # another service's variable
        (None, {}, None),
    ],
)
def test_endpoint_precedence(
    configured: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert endpoint_for("s3", configured, environ=environ) == expected


def test_missing_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    config = Config(sqs_queue_url="http://127.0.0.1:9/000000000000/q", download_folder=Path("/x"))
    with pytest.raises(ConfigError, match="aws_region"):
        make_clients(config)


def test_region_from_an_aws_queue_url_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    config = Config(
        sqs_queue_url="https://sqs.eu-west-3.amazonaws.com/123456789012/q",
        download_folder=Path("/x"),
    )
    clients = make_clients(config)
    assert clients.s3.for_bucket("any").meta.region_name == "eu-west-3"
    assert clients.sqs_control.meta.region_name == "eu-west-3"


def test_clients_fit_what_a_reload_may_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients are built once; a reload may raise wait_time_seconds to 20 and workers to
    256. The receive client's read timeout outlasts the longest long poll, and the S3 pool
    keeps a connection for every thread that may call S3 at once, whatever the start-up
    values: the small lane (workers or max_workers, up to 256), the large objects' lane and
    their part threads, a reconcile pass's threads and its lister (urllib3 closes what comes
    back to a full pool: a smaller pool would mean new connections under load)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = Config(
        sqs_queue_url="http://127.0.0.1:9/000000000000/q",
        aws_region="eu-west-1",
        download_folder=Path("/x"),
        wait_time_seconds=1,
        workers=2,
        reconcile=ReconcileConfig(workers=10),
    )
    clients = make_clients(config)
    assert clients.sqs_receive.meta.config.read_timeout > 20
    threads = 256 + LARGE_SLOTS + config.large_objects.concurrency + 10 + 1
    assert clients.s3.for_bucket("any").meta.config.max_pool_connections >= threads
    assert s3_pool_size(config) == threads
    # Every delete batch in flight at once, and the loop's own calls besides.
    assert clients.sqs_control.meta.config.max_pool_connections == MAX_DELETE_BATCHES + 4
    # A connection per receiver thread, as many as workers: auto starts at 256 slots.
    most_pollers = pollers_for(256, config.pollers)
    assert clients.sqs_receive.meta.config.max_pool_connections == most_pollers == 32
