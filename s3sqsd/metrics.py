"""Counters, gauges and histograms: the one set of numbers behind STATUS= and Prometheus.

The loop thread (and, for a few facts, the download threads) records into ``Metrics``; the
``STATUS=`` line reads the same values, and so does the optional Prometheus endpoint through a
custom collector. ``prometheus_client`` is an optional dependency (Debian: a ``Recommends`` on
python3-prometheus-client), imported only when ``metrics.listen`` is configured: the daemon runs
without it and says so once.
"""

from __future__ import annotations

import bisect
import errno
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from s3sqsd import __version__
from s3sqsd.config import split_listen

logger = logging.getLogger(__name__)

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


DEFINITIONS = (
    Definition("messages_received", COUNTER, "SQS messages received."),
    Definition("messages_deleted", COUNTER, "SQS messages deleted after success."),
    Definition(
        "messages_returned",
        COUNTER,
        "SQS messages made visible again (retry, local error, release, left for redrive).",
        ("reason",),
    ),
    Definition(
        "messages_dead_lettered",
        COUNTER,
        "SQS messages sent to the dead-letter queue, by reason.",
        ("reason",),
    ),
    Definition(
        "messages_failed",
        COUNTER,
        "Messages whose processing failed (each failed attempt), by reason.",
        ("reason",),
    ),
    Definition("visibility_extensions", COUNTER, "Visibility timeout extensions (heartbeats)."),
    Definition("objects_downloaded", COUNTER, "Objects written to their final path."),
    Definition("downloaded_bytes", COUNTER, "Bytes of objects written to their final path."),
    Definition(
        "objects_verified",
        COUNTER,
        "Objects written to their final path, by the check that verified them "
        "(crc64nvme, sha256-composite, md5, md5-parts, length-only...).",
        ("verified_by",),
    ),
    Definition(
        "objects_skipped",
        COUNTER,
        "Objects not downloaded: stale or duplicate events, folder markers.",
        ("outcome",),
    ),
    Definition("records_ignored", COUNTER, "Records that announce no creation (removals...)."),
    Definition("objects_removed", COUNTER, "Local files removed by on_remove: delete."),
    Definition(
        "sources_deleted",
        COUNTER,
        "Source objects deleted in S3 after their download (after_download: delete).",
    ),
    Definition(
        "sources_kept",
        COUNTER,
        "Source objects after_download: delete left in S3, by reason: stale, duplicate, "
        "not_announced, changed, absent, unconditional_only, access_denied, refused.",
        ("reason",),
    ),
    Definition("receive_errors", COUNTER, "Failed ReceiveMessage calls."),
    Definition(
        "reconcile_passes",
        COUNTER,
        "Reconcile passes, by result: complete, failed (objects or listings failed), stopped.",
        ("result",),
    ),
    Definition(
        "reconcile_missing",
        COUNTER,
        "Objects a reconcile pass had to fetch: events this host never acted on.",
    ),
    Definition(
        "reconcile_last_complete_timestamp_seconds",
        GAUGE,
        "Unix time of the end of the last complete reconcile pass.",
    ),
    Definition("downloads_in_flight", GAUGE, "Messages being downloaded now."),
    Definition(
        "workers_target",
        GAUGE,
        "Downloads of objects below large_objects.threshold_bytes allowed at once: workers, "
        "or the workers: auto controller's current target.",
    ),
    Definition("messages_in_hand", GAUGE, "Messages received and not yet settled."),
    Definition(
        "queue_messages",
        GAUGE,
        "Approximate queue depth as SQS reports it (read at most once a minute).",
        ("state",),
    ),
    Definition(
        "disk_free_bytes",
        GAUGE,
        "Free bytes an unprivileged process may use in each download folder (statvfs), "
        "measured only with min_free_bytes set.",
        ("folder",),
    ),
    Definition(
        "paused",
        GAUGE,
        "1 while receiving is held for a reason (disk: messages wait for min_free_bytes).",
        ("reason",),
    ),
    Definition(
        "last_download_timestamp_seconds",
        GAUGE,
        "Unix time of the last object written to its final path.",
    ),
    Definition(
        "download_duration_seconds",
        HISTOGRAM,
        "Time to GET, verify and place one object.",
        buckets=DURATION_BUCKETS,
    ),
    Definition(
        "lag_seconds",
        HISTOGRAM,
        "End-to-end lag: SQS SentTimestamp to the file in place.",
        buckets=LAG_BUCKETS,
    ),
)
_BY_NAME = {d.name: d for d in DEFINITIONS}
PREFIX = "s3sqsd_"


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append((_format_bound(bound), float(running)))
        out.append(("+Inf", float(self.count)))
        return out


def _format_bound(bound: float) -> str:
    return repr(float(bound))


class Metrics:
    """Thread-safe values; cheap enough to update on every message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}
        self._histograms: dict[str, _Histogram] = {
            d.name: _Histogram(d.buckets) for d in DEFINITIONS if d.kind == HISTOGRAM
        }
        self.last_error = ""

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = value

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._histograms[name].observe(value)

    def get(self, name: str, **labels: str) -> float:
        """One value; with no labels given for a labelled metric, the sum over its labels."""
        definition = _BY_NAME[name]
        with self._lock:
            if labels or not definition.labels:
                return self._values.get(self._key(name, labels), 0.0)
            return sum(v for (n, _), v in self._values.items() if n == name)

    def samples(self) -> Iterator[tuple[Definition, dict[tuple[str, ...], float]]]:
        """Every scalar metric with its labelled values (a consistent snapshot)."""
        with self._lock:
            values = dict(self._values)
        for definition in DEFINITIONS:
            if definition.kind == HISTOGRAM:
                continue
            yield (
                definition,
                {labels: v for (n, labels), v in values.items() if n == definition.name},
            )

    def histograms(self) -> Iterator[tuple[Definition, list[tuple[str, float]], float]]:
        with self._lock:
            snapshot = {name: (h.cumulative(), h.total) for name, h in self._histograms.items()}
        for definition in DEFINITIONS:
            if definition.kind == HISTOGRAM:
                buckets, total = snapshot[definition.name]
                yield definition, buckets, total

    @staticmethod
    def _key(name: str, labels: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
        definition = _BY_NAME[name]
        if labels and set(labels) != set(definition.labels):
            raise ValueError(f"{name} takes labels {definition.labels}, got {tuple(labels)}")
        return name, tuple(labels[label] for label in definition.labels) if labels else ()


class _Collector:
    """Presents ``Metrics`` to prometheus_client (imported lazily, so optional)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        info = GaugeMetricFamily(
            PREFIX + "build_info", "s3sqsd version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info
        for definition, values in self._metrics.samples():
            family_type = CounterMetricFamily if definition.kind == COUNTER else GaugeMetricFamily
            family = family_type(
                PREFIX + definition.name, definition.help, labels=list(definition.labels)
            )
            if definition.labels:
                for labels, value in sorted(values.items()):
                    family.add_metric(list(labels), value)
            else:
                family.add_metric([], values.get((), 0.0))
            yield family
        for definition, buckets, total in self._metrics.histograms():
            yield HistogramMetricFamily(
                PREFIX + definition.name, definition.help, buckets=buckets, sum_value=total
            )


parse_listen = split_listen  # the one parser of ``metrics.listen`` lives in config/model.py


def serve(metrics: Metrics, *, listen: str, importer: Callable[[], Any] | None = None) -> bool:
    """Expose ``metrics`` over HTTP at ``listen``; False (and one log line) if it cannot."""
    try:
        prometheus = importer() if importer else __import__("prometheus_client")
    except ImportError:
        logger.error(
            "metrics.listen is set but the Python module prometheus_client is not installed "
            "(Debian: apt install python3-prometheus-client); running without metrics",
            extra={"event": "metrics.unavailable"},
        )
        return False
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    host, port = parse_listen(listen)
    try:
        prometheus.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        why = str(exc)
        if exc.errno == errno.EADDRINUSE:
            # Two instances of s3sqsd@.service with the default listen address, typically.
            why = (
                "the address is in use (another s3sqsd instance or another program listens "
                "there; give each instance its own metrics.listen port)"
            )
        logger.error(
            "cannot serve metrics on %s: %s; running without metrics",
            listen,
            why,
            extra={"event": "metrics.unavailable", "error": str(exc)},
        )
        return False
    logger.info(
        "serving Prometheus metrics on http://%s/metrics",
        listen,
        extra={"event": "metrics.listening", "listen": listen},
    )
    return True


def wall_clock() -> float:
    return time.time()
