"""The reconcile thread on its own, with a stand-in for the pass: when passes run, what they
count, and that a failing pass or a stop never kills or hangs the daemon."""

from __future__ import annotations

import logging
import threading

import pytest

from s3sqsd.config import ReconcileConfig, parse_config
from s3sqsd.errors import ConfigError
from s3sqsd.metrics import Metrics
from s3sqsd.reconcile import PassReport, Reconciler

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/inbox"


class Passes:
    """Counts passes; each returns the next report (or raises it)."""

    def __init__(self, *reports: PassReport | Exception) -> None:
        self.reports = list(reports)
        self.count = 0
        self.ran = threading.Semaphore(0)
        self.stops: list[threading.Event] = []

    def __call__(self, stop: threading.Event) -> PassReport:
        self.count += 1
        self.stops.append(stop)
        try:
            report = self.reports.pop(0) if self.reports else PassReport()
            if isinstance(report, Exception):
                raise report
            return report
        finally:
            self.ran.release()


def started(passes: Passes, *, interval: float | None, metrics: Metrics) -> Reconciler:
    reconciler = Reconciler(run_pass=passes, interval_seconds=interval, metrics=metrics)
    reconciler.start()
    return reconciler


def test_configured_it_passes_at_start_then_every_interval() -> None:
    passes, metrics = Passes(), Metrics()
    reconciler = started(passes, interval=0.05, metrics=metrics)
    for _ in range(3):
        assert passes.ran.acquire(timeout=5)
    reconciler.stop()
    assert reconciler.join(5)
    assert metrics.get("reconcile_passes", result="complete") >= 3


def test_unconfigured_it_passes_only_when_triggered() -> None:
    passes, metrics = Passes(), Metrics()
    reconciler = started(passes, interval=None, metrics=metrics)
    assert not passes.ran.acquire(timeout=0.2)
    reconciler.trigger()
    assert passes.ran.acquire(timeout=5)
    reconciler.stop()
    assert reconciler.join(5)
    assert passes.count == 1


def test_missing_objects_are_counted_and_said_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="s3sqsd.reconcile")
    passes, metrics = Passes(PassReport(listed=10, missing=3, skipped=7)), Metrics()
    reconciler = started(passes, interval=None, metrics=metrics)
    reconciler.trigger()
    assert passes.ran.acquire(timeout=5)
    reconciler.stop()
    assert reconciler.join(5)
    assert metrics.get("reconcile_missing") == 3
    (finished,) = [r for r in caplog.records if getattr(r, "event", "") == "reconcile.finished"]
    assert finished.levelno == logging.WARNING
    assert (finished.listed, finished.missing) == (10, 3)  # type: ignore[attr-defined]


def test_a_pass_with_failures_counts_as_failed() -> None:
    passes, metrics = Passes(PassReport(listed=2, failed=1)), Metrics()
    reconciler = started(passes, interval=None, metrics=metrics)
    reconciler.trigger()
    assert passes.ran.acquire(timeout=5)
    reconciler.stop()
    assert reconciler.join(5)
    assert metrics.get("reconcile_passes", result="failed") == 1


def test_a_pass_that_raises_is_logged_and_the_next_one_runs() -> None:
    passes, metrics = Passes(RuntimeError("listing exploded"), PassReport(listed=1)), Metrics()
    reconciler = started(passes, interval=None, metrics=metrics)
    reconciler.trigger()
    assert passes.ran.acquire(timeout=5)
    reconciler.trigger()
    assert passes.ran.acquire(timeout=5)
    reconciler.stop()
    assert reconciler.join(5)
    assert metrics.get("reconcile_passes", result="failed") == 1
    assert metrics.get("reconcile_passes", result="complete") == 1


def test_stop_reaches_a_pass_under_way() -> None:
    entered, seen = threading.Event(), threading.Event()

    def long_pass(stop: threading.Event) -> PassReport:
        entered.set()
        if stop.wait(5):
            seen.set()
        return PassReport(complete=False)

    metrics = Metrics()
    reconciler = Reconciler(run_pass=long_pass, interval_seconds=3600, metrics=metrics)
    reconciler.start()
    assert entered.wait(5)
    reconciler.stop()
    assert reconciler.join(5)
    assert seen.is_set()
    assert metrics.get("reconcile_passes", result="stopped") == 1
    assert metrics.get("reconcile_last_complete_timestamp_seconds") == 0


class TestConfig:
    def test_off_by_default_and_an_empty_section_means_hourly(self) -> None:
        assert parse_config({"sqs_queue_url": QUEUE}).reconcile is None
        assert parse_config(
            {"sqs_queue_url": QUEUE, "s3_bucket_name": "inbox", "reconcile": {}}
        ).reconcile == (ReconcileConfig(interval_seconds=3600, workers=2, min_age_seconds=300))

    @pytest.mark.parametrize(
        ("section", "named"),
        [
            ({"interval_seconds": 5}, "reconcile.interval_seconds"),
            ({"interval_seconds": "hourly"}, "reconcile.interval_seconds"),
            ({"workers": 0}, "reconcile.workers"),
            ({"interval": 60}, "reconcile.interval"),
            (60, "reconcile"),
        ],
    )
    def test_bad_values_name_the_key(self, section: object, named: str) -> None:
        with pytest.raises(ConfigError) as caught:
            parse_config({"sqs_queue_url": QUEUE, "s3_bucket_name": "inbox", "reconcile": section})
        assert any(problem.startswith(named) for problem in caught.value.problems), (
            caught.value.problems
        )


def test_a_pass_waits_until_the_event_path_is_idle() -> None:
    passes, busy = Passes(), threading.Event()
    busy.set()
    reconciler = Reconciler(
        run_pass=passes,
        interval_seconds=None,
        metrics=Metrics(),
        idle=lambda: not busy.is_set(),
        idle_poll_seconds=0.01,
    )
    reconciler.start()
    reconciler.trigger()
    assert not passes.ran.acquire(timeout=0.2)
    busy.clear()
    assert passes.ran.acquire(timeout=5)
    reconciler.stop()
    assert reconciler.join(5)


def test_a_pass_needs_buckets_to_list() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sqs_queue_url": QUEUE, "reconcile": {}})
    assert caught.value.problems[0].startswith("reconcile: needs s3_bucket_name")
    routed = {
        "sqs_queue_url": QUEUE,
        "reconcile": {},
        "routes": [{"bucket": "inbox", "download_folder": "/srv/inbox"}],
    }
    assert parse_config(routed).reconcile is not None
