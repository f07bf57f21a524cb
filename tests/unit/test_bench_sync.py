"""bench/sync.py's pure helpers: each peer is configured as the docs say, and the targets are
judged on the right figures (no timing here: the benchmark itself asserts nothing)."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import pytest

from bench.harness import config_overrides
from bench.sync import (
    aws_config_text,
    command,
    judge,
    missing,
    order,
    rclone_env,
    s3sqsd_config,
    summarise,
)

ENDPOINT = "http://127.0.0.1:5000"


def _command(kind: str, tmp_path: Path) -> list[str]:
    return command(
        kind,
        bucket="b",
        folder=tmp_path / "out",
        workers=8,
        endpoint=ENDPOINT,
        config_file=tmp_path / "c.yaml",
        aws="/venv/bin/aws",
        rclone="rclone",
    )


def test_rclone_runs_at_s3sqsd_concurrency_and_compares_checksums(tmp_path: Path) -> None:
    argv = _command("rclone", tmp_path)
    assert argv[:4] == ["rclone", "copy", "bench:b", str(tmp_path / "out")]
    assert argv[argv.index("--transfers") + 1] == "8"
    assert argv[argv.index("--checkers") + 1] == "8"
    assert "--s3-no-check-bucket" in argv
    assert "--checksum" in argv
    assert "--checksum" not in _command("rclone-mtime", tmp_path)  # its default comparison


def test_rclone_remote_comes_from_the_environment() -> None:
    env = rclone_env(ENDPOINT)
    assert env["RCLONE_CONFIG_BENCH_TYPE"] == "s3"
    assert env["RCLONE_CONFIG_BENCH_ENV_AUTH"] == "true"  # the test credentials, as the others
    assert env["RCLONE_CONFIG_BENCH_ENDPOINT"] == ENDPOINT
    assert env["RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE"] == "true"


def test_aws_cli_config_sets_concurrency_and_path_style(tmp_path: Path) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(aws_config_text(8))
    nested = dict(
        line.strip().split(" = ") for line in parser["default"]["s3"].splitlines() if line.strip()
    )
    assert nested == {"max_concurrent_requests": "8", "addressing_style": "path"}
    argv = _command("aws", tmp_path)
    assert argv[:5] == ["/venv/bin/aws", "s3", "sync", "s3://b", str(tmp_path / "out")]
    assert argv[argv.index("--endpoint-url") + 1] == ENDPOINT


def test_s3sqsd_runs_sync_with_its_defaults_plus_workers(tmp_path: Path) -> None:
    argv = _command("s3sqsd", tmp_path)
    assert argv[1:] == ["-m", "s3sqsd", "sync", "--config", str(tmp_path / "c.yaml")]
    config = s3sqsd_config(bucket="b", folder=tmp_path, endpoint=ENDPOINT, workers=8)
    assert config["workers"] == 8
    assert config["s3_bucket_name"] == "b"
    assert set(config) == {
        "sqs_queue_url",
        "s3_bucket_name",
        "download_folder",
        "aws_region",
        "endpoint_url",
        "workers",
    }


def test_a_missing_tool_is_named_with_how_to_get_it(tmp_path: Path) -> None:
    reason = missing("aws", aws=str(tmp_path / "nope"), rclone="rclone")
    assert reason is not None
    assert "make bench-venv" in reason
    reason = missing("rclone", aws="", rclone=str(tmp_path / "no-rclone"))
    assert reason is not None
    assert "apt-get install rclone" in reason
    assert missing("s3sqsd", aws="", rclone="") is None


def test_order_alternates() -> None:
    assert order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert order(["a", "b", "c"], 1) == ["c", "b", "a"]


def _run(pass_name: str, kind: str, **figures: Any) -> dict[str, Any]:
    base = {"pass": pass_name, "contestant": kind, "complete": True, "load_average": "1 1 1"}
    return {**base, **figures}


def test_targets_judge_the_medians_and_the_faster_rclone() -> None:
    results = [
        _run("small", "s3sqsd", files_per_s=300.0),
        _run("small", "s3sqsd", files_per_s=100.0),
        _run("small", "s3sqsd", files_per_s=200.0),
        _run("small", "aws", files_per_s=100.0),
        _run("small", "rclone", files_per_s=250.0),
        _run("large", "s3sqsd", mb_per_s=90.0),
        _run("large", "rclone", mb_per_s=100.0),
        _run("no-op", "s3sqsd", seconds=3.0, peak_rss_mib=60.0),
        _run("no-op", "rclone", seconds=2.0),
        _run("no-op", "rclone-mtime", seconds=9.0),
    ]
    rows = summarise(results)
    assert [r["runs"] for r in rows if r["contestant"] == "s3sqsd"] == [3, 1, 1]
    met = {t["target"]: t["met"] for t in judge(rows)}
    assert met == {
        "small: files/s ≥ 1.5 x aws": True,  # median 200 / 100
        "small: files/s ≥ 1.0 x rclone": False,  # 200 / 250
        "large: MB/s ≥ 0.9 x rclone": True,
        "no-op: time ≤ 1.0 x rclone (its faster comparison)": False,  # 3.0 / 2.0, not / 9.0
        "no-op: s3sqsd peak RSS ≤ 100 MiB": True,
    }


def test_an_incomplete_or_skipped_contestant_is_not_judged() -> None:
    results = [
        _run("small", "s3sqsd", files_per_s=200.0),
        {**_run("small", "aws", files_per_s=900.0), "complete": False},
    ]
    checks = {t["target"]: t["met"] for t in judge(summarise(results))}
    assert checks["small: files/s ≥ 1.5 x aws"] is None  # aws incomplete
    assert checks["small: files/s ≥ 1.0 x rclone"] is None  # rclone skipped
    assert checks["no-op: s3sqsd peak RSS ≤ 100 MiB"] is None


def test_config_overrides_read_yaml_values() -> None:
    extra = config_overrides(["workers=16", "large_objects={threshold_bytes: 134217728}"])
    assert extra == {"workers": 16, "large_objects": {"threshold_bytes": 134217728}}
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        config_overrides(["workers"])
