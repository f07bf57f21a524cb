"""The numbers behind STATUS= and the Prometheus endpoint."""

from __future__ import annotations

import logging
import socket
import urllib.request
from typing import Any

import pytest

from s3sqsd.metrics import Metrics, parse_listen, serve


def test_counters_gauges_and_labelled_sums() -> None:
    metrics = Metrics()
    metrics.inc("messages_received")
    metrics.inc("messages_received", 2)
    metrics.inc("messages_dead_lettered", reason="bad_message")
    metrics.inc("messages_dead_lettered", reason="unsafe_key")
    metrics.inc("messages_dead_lettered", reason="unsafe_key")
    metrics.set("downloads_in_flight", 4)
    assert metrics.get("messages_received") == 3
    assert metrics.get("messages_dead_lettered") == 3
    assert metrics.get("messages_dead_lettered", reason="unsafe_key") == 2
    assert metrics.get("downloads_in_flight") == 4
    with pytest.raises(ValueError, match="labels"):
        metrics.inc("messages_dead_lettered", kind="x")


def test_prometheus_text_has_every_family() -> None:
    prometheus = pytest.importorskip("prometheus_client")
    from s3sqsd.metrics import _Collector

    metrics = Metrics()
    metrics.inc("objects_downloaded", 2)
    metrics.inc("downloaded_bytes", 3000)
    metrics.inc("messages_dead_lettered", reason="too_many_attempts")
    metrics.observe("download_duration_seconds", 0.07)
    metrics.observe("download_duration_seconds", 20)
    metrics.observe("lag_seconds", 0.3)
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    text = prometheus.generate_latest(registry).decode()
    assert "s3sqsd_objects_downloaded_total 2.0" in text
    assert "s3sqsd_downloaded_bytes_total 3000.0" in text
    assert 's3sqsd_messages_dead_lettered_total{reason="too_many_attempts"} 1.0' in text
    assert 's3sqsd_download_duration_seconds_bucket{le="0.1"} 1.0' in text
    assert 's3sqsd_download_duration_seconds_bucket{le="+Inf"} 2.0' in text
    assert "s3sqsd_download_duration_seconds_count 2.0" in text
    assert "s3sqsd_lag_seconds_sum 0.3" in text
    assert 's3sqsd_build_info{version="' in text
    assert "s3sqsd_last_download_timestamp_seconds" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_exposes_the_same_numbers_over_http() -> None:
    pytest.importorskip("prometheus_client")
    metrics = Metrics()
    port = free_port()
    assert serve(metrics, listen=f"127.0.0.1:{port}")
    metrics.inc("objects_downloaded", 5)
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert "s3sqsd_objects_downloaded_total 5.0" in text


def test_missing_module_is_one_clear_line(caplog: pytest.LogCaptureFixture) -> None:
    def missing() -> Any:
        raise ImportError("No module named 'prometheus_client'")

    caplog.set_level(logging.INFO)
    assert not serve(Metrics(), listen="127.0.0.1:9464", importer=missing)
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "metrics.unavailable"]
    assert "python3-prometheus-client" in record.getMessage()


def test_a_port_in_use_is_one_line_naming_metrics_listen(caplog: pytest.LogCaptureFixture) -> None:
    """Two instances of s3sqsd@.service with the default address: the second says what to do,
    in one line, and runs on without metrics (downloads never wait on the endpoint)."""
    pytest.importorskip("prometheus_client")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        caplog.set_level(logging.INFO)
        assert not serve(Metrics(), listen=listen)
    [record] = [r for r in caplog.records if r.name == "s3sqsd.metrics"]
    assert record.levelno == logging.ERROR
    assert getattr(record, "event", "") == "metrics.unavailable"
    text = record.getMessage()
    assert listen in text
    assert "in use" in text
    assert "its own metrics.listen port" in text
    assert "running without metrics" in text


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9100", ("::1", 9100))],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected
