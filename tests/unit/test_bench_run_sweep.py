"""bench/run.py's bookkeeping for issue 17: the workers sweep, the networks, workload f's
latencies and targets, and the count of discarded pool connections. No benchmark runs here and
nothing is timed: these are the figures' arithmetic and grouping, on made-up records.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import pytest
import urllib3.connectionpool

from bench.harness import POOL_FULL, Contestant, count_lines
from bench.run import (
    NETWORK_DELAYS_MS,
    latency_figures,
    main,
    summarise,
    sweep_order,
    table,
    targets,
    workers_figures,
    workers_trail,
)


def test_the_networks_add_25_and_50_ms_each_way_beside_rtt20() -> None:
    assert NETWORK_DELAYS_MS == {"rtt20": 10.0, "rtt50": 25.0, "rtt100": 50.0}


def test_a_sweep_runs_each_contestant_at_each_concurrency_and_the_original_once() -> None:
    order = sweep_order(["original", "limit", "s3sqsd"], [8, 32], 0)
    assert order == [
        ("original", None),
        ("limit", 8),
        ("s3sqsd", 8),
        ("limit", 32),
        ("s3sqsd", 32),
    ]
    assert sweep_order(["original", "limit", "s3sqsd"], [8, 32], 1) == order[::-1]


def test_latency_is_from_the_start_and_counts_only_the_files_seen() -> None:
    keys = [f"k{i}" for i in range(100)]
    seen = {k: 10.0 + (i + 1) / 100 for i, k in enumerate(keys[:90])}  # 10 never appeared
    figures = latency_figures(seen, keys, since=10.0, size=4096)
    assert figures["files_seen"] == 90
    assert figures["latency_p50_ms"] == pytest.approx(460, abs=1)  # nearest rank: the 46th
    assert figures["latency_p99_ms"] == pytest.approx(900, abs=1)
    assert figures["latency_max_ms"] == pytest.approx(900, abs=1)
    assert figures["files_per_s"] == pytest.approx(100, rel=1e-6)  # 90 files in 0.9 s


def test_latency_of_a_set_of_which_nothing_arrived() -> None:
    assert latency_figures({}, ["k"], since=0.0, size=1) == {"files_seen": 0}


def _run(workload: str, contestant: str, workers: int | None, **figures: Any) -> dict[str, Any]:
    return {
        "workload": workload,
        "network": "rtt50",
        "contestant": contestant,
        "workers": workers,
        **figures,
    }


def test_rows_are_per_concurrency_and_the_table_shows_it_only_in_a_sweep() -> None:
    runs = [
        _run("a", "s3sqsd", 8, files_per_s=100.0, connections=11, pool_discards=0),
        _run("a", "s3sqsd", 8, files_per_s=120.0, connections=13, pool_discards=0),
        _run("a", "s3sqsd", 32, files_per_s=300.0, connections=35, pool_discards=2),
    ]
    rows = summarise(runs)
    assert [(r["workers"], r["runs"], r["files_per_s"]) for r in rows] == [
        (8, 2, 110.0),
        (32, 1, 300.0),
    ]
    assert rows[0]["connections"] == 12
    text = table(rows)
    assert text.splitlines()[0].startswith("| workload | network | contestant | workers |")
    assert "| connections | pool discards |" in text.splitlines()[0]
    assert "| 32 |" in text
    single = table(summarise(runs[:2]))
    assert "workers" not in single.splitlines()[0]


def _target(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [c for c in checks if c["target"] == name]
    return found


def test_workload_f_is_judged_against_the_same_small_files_alone() -> None:
    runs = [
        _run("f0", "s3sqsd", 8, latency_p99_ms=1000.0, files_per_s=200.0),
        _run("f", "s3sqsd", 8, latency_p99_ms=2500.0, files_per_s=90.0),
    ]
    checks = targets(summarise(runs), runs)
    p99 = _target(checks, "f rtt50: small files' p99 ≤ 2 x their p99 alone (f0)")
    assert p99["met"] is False
    assert "= 2.50" in p99["detail"]
    rate = _target(checks, "f rtt50: small files/s ≥ 0.5 x alone (f0)")
    assert rate["met"] is False
    assert not [c for c in checks if c["target"].startswith("f loopback")]  # not run: not listed


def test_a_sweep_is_judged_at_the_concurrency_asked_for() -> None:
    runs = [
        _run("a", "s3sqsd", 8, files_per_s=80.0),
        _run("a", "limit", 8, files_per_s=100.0),
        _run("a", "s3sqsd", 32, files_per_s=290.0),
        _run("a", "limit", 32, files_per_s=300.0),
    ]
    name = "a rtt50: files/s ≥ 0.9 x limit (same workers)"
    assert _target(targets(summarise(runs), runs, 8), name)["met"] is False
    assert _target(targets(summarise(runs), runs, 32), name)["met"] is True


def test_the_discard_warning_counted_is_the_one_urllib3_logs() -> None:
    """If urllib3 rewords it, the count would silently read 0: the text must be in its source,
    and a line as Python's last-resort handler prints it must count."""
    source = inspect.getsource(urllib3.connectionpool)
    assert POOL_FULL in source
    line = logging.Formatter("%(message)s").format(
        logging.makeLogRecord(
            {
                "msg": "Connection pool is full, discarding connection: %s. "
                "Connection pool size: %s",
                "args": ("127.0.0.1", 10),
            }
        )
    )
    assert count_lines(["ready"], [line, line], text=POOL_FULL) == 2
    assert count_lines(["Connection pool is"], text=POOL_FULL) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--networks", "rtt70"],
        ["--workers", "8,x"],
        ["--workers", "0"],
    ],
)
def test_bad_networks_and_workers_are_refused_before_anything_starts(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2


@pytest.mark.parametrize(("extra", "pollers"), [({}, "1"), ({"pollers": 4}, "4")])
def test_the_floor_gets_the_pollers_s3sqsd_is_given(
    tmp_path: Path, extra: dict[str, Any], pollers: str
) -> None:
    floor = Contestant(
        "limit",
        endpoint="http://127.0.0.1:1",
        queue_url="http://127.0.0.1:1/q",
        bucket="b",
        folder=tmp_path,
        workdir=tmp_path,
        workers=32,
        extra_config=extra,
    )
    command = floor.process.argv
    assert command[command.index("--pollers") + 1] == pollers
    assert command[command.index("--workers") + 1] == "32"


def _change(t: float, workers: int, previous: int, reason: str) -> dict[str, Any]:
    return {
        "event": "concurrency.changed",
        "_t": t,
        "workers": workers,
        "previous": previous,
        "reason": reason,
        "pollers": max(1, workers // 16),
        "files_per_second": 100.0,
    }


def test_the_workers_path_is_kept_from_ready_with_its_reasons() -> None:
    changes = [
        _change(101.0, 16, 8, "16 slots brought 90 % more"),
        _change(102.5, 32, 16, "32 slots brought 60 % more"),
        _change(104.25, 24, 32, "undone"),
    ]
    figures = workers_figures(changes, ready_at=100.0)
    assert figures == {
        "workers_path": [
            [1.0, 16, "16 slots brought 90 % more"],
            [2.5, 32, "32 slots brought 60 % more"],
            [4.25, 24, "undone"],
        ],
        "workers_first": 8,
        "workers_final": 24,
        "workers_max": 32,
    }
    assert workers_trail(figures) == "8>16>32>24"


def test_fixed_workers_leave_no_path_and_no_trail_on_the_progress_line() -> None:
    figures = workers_figures([], ready_at=5.0)
    assert figures == {
        "workers_path": [],
        "workers_first": None,
        "workers_final": None,
        "workers_max": None,
    }
    assert workers_trail(figures) is None
    assert workers_trail({}) is None  # a row of another contestant, or of an older JSON


def test_the_highest_target_counts_the_one_it_started_from() -> None:
    figures = workers_figures([_change(1.0, 6, 8, "no backlog")], ready_at=0.0)
    assert (figures["workers_final"], figures["workers_max"]) == (6, 8)
    assert workers_trail(figures) == "8>6"


def test_the_settle_point_is_a_median_over_repeats_and_none_without_auto() -> None:
    runs = [
        _run("a", "s3sqsd", 64, files_per_s=100.0, workers_final=32, workers_max=64),
        _run("a", "s3sqsd", 64, files_per_s=110.0, workers_final=64, workers_max=64),
        _run("a", "limit", 64, files_per_s=120.0),
    ]
    rows = {row["contestant"]: row for row in summarise(runs)}
    assert rows["s3sqsd"]["workers_final"] == 48
    assert rows["s3sqsd"]["workers_max"] == 64
    assert rows["limit"]["workers_final"] is None
