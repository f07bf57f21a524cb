"""The chaos run (``python -m bench.chaos``) in CI: the quick chaos profile and the quick
scale-out, checked on their report.

Each run is its own process (its own emulator, proxy and daemons, on 127.0.0.1), started with a
fixed seed, and writes its figures as JSON; the test asserts on those figures. The full profiles
(2,000 objects up to 32 MiB; 3,000 objects for scale-out) are run by hand: docs/reliability.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import REPO_ROOT, daemon_env

pytestmark = pytest.mark.integration


def run_chaos(tmp_path: Path, *args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / "report.json"
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            *args,
            "--workdir",
            str(tmp_path / "run"),
            "--json",
            str(report),
        ],
        cwd=REPO_ROOT,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = completed.stdout[-20000:] + completed.stderr[-5000:]
    print(output)
    print(f"bench.chaos {' '.join(args)}: {time.monotonic() - started:.0f} s")
    assert report.exists(), output
    return completed.returncode, json.loads(report.read_text(encoding="utf-8")), output


def test_chaos_quick_profile_kills_faults_and_loses_nothing(tmp_path: Path) -> None:
    """~250 objects (0 B to 1.5 MiB), 3 daemons with their own folders, 10 % of S3 and SQS
    requests faulted, a daemon SIGKILLed / SIGTERMed / twice-SIGTERMed every 2-6 s (at least
    12 times) and restarted: every object ends on disk with the right bytes, nothing partial
    or stray, no temp file after the final stop, nothing outside the folders, the queue
    empty, every dead-letter entry with a reason. Duplicate downloads and crashes are
    reported, not gated (crashes: see the known defect in docs/reliability.md)."""
    code, report, output = run_chaos(tmp_path, "--profile", "quick", "--seed", "1", timeout=300)
    figures = report["figures"]
    assert report["checks"] == dict.fromkeys(report["checks"], True), output
    assert code == 0, output
    assert figures["objects"] >= 200
    assert figures["missing"] == 0
    assert figures["wrong_bytes"] == 0
    assert figures["stray_or_partial_files"] == 0
    assert figures["temp_files_after_final_stop"] == 0
    assert figures["files_outside_download_folders"] == 0
    assert (figures["queue_visible"], figures["queue_in_flight"]) == (0, 0)
    assert figures["dead_lettered_without_reason"] == 0
    assert figures["downloads_logged"] >= figures["objects"] - figures["dead_lettered"]
    assert report["settings"]["daemons"] == 3
    # The chaos really happened: kills, stops, restarts and about 10 % of requests faulted.
    assert report["chaos_actions"].get("SIGKILL", 0) >= 4, report["chaos_actions"]
    assert sum(report["chaos_actions"].values()) >= 12, report["chaos_actions"]
    assert figures["daemon_starts"] >= 3 + 12
    proxy = report["proxy"]
    assert 0.06 <= proxy["faulted_fraction"] <= 0.14, proxy
    assert {"GetObject", "ReceiveMessage", "DeleteMessageBatch"} <= set(
        proxy["faults_per_operation"]
    )
    assert report["elapsed_s"] < 240


def test_scaleout_quick_three_daemons_share_one_queue(tmp_path: Path) -> None:
    """300 objects, three daemons on one queue, no faults and no kills: every object exactly
    once on disk (union of the three folders) with the right bytes, no duplicate download,
    and every daemon took part."""
    code, report, output = run_chaos(
        tmp_path, "--profile", "scaleout-quick", "--seed", "2", timeout=240
    )
    figures = report["figures"]
    assert code == 0, output
    assert report["passed"], output
    assert figures["objects"] == 300
    assert figures["missing"] == 0
    assert figures["wrong_bytes"] == 0
    assert figures["duplicate_downloads"] == 0
    assert figures["objects_on_disk_in_more_than_one_folder"] == 0
    assert figures["downloads_logged"] == 300
    assert len(figures["downloads_per_daemon"]) == 3
    assert min(figures["downloads_per_daemon"]) >= 1, figures["downloads_per_daemon"]
    assert figures["crashes"] == 0
    assert report["chaos_actions"] == {}
