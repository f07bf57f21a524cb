"""``s3sqsd sync`` against the emulator over HTTP: the real command in a subprocess, and the
``Sync`` engine in the test process where a test must reach inside a run (stop after N, an
object deleted between the listing and its GET)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.config import Config, parse_config
from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import XATTR_NAME, Fetcher
from s3sqsd.listing import targets
from s3sqsd.outcomes import FetchResult
from s3sqsd.paths import TEMP_DIR_NAME
from s3sqsd.provenance import Origin, read_provenance
from s3sqsd.sync import Planned, Sync, Tally, sync_fetchers
from tests.support.daemon import REPO_ROOT, daemon_env, run_cli, temp_files, write_config
from tests.support.emulator import REGION, Emulator
from tests.support.fetching import put

pytestmark = pytest.mark.integration

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 78


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


@pytest.fixture
def base(emulator: Emulator, bucket: str, folder: Path) -> dict[str, Any]:
    """A config for ``bucket`` into ``folder`` (no queue is read by a sync)."""
    return {
        "aws_region": REGION,
        "sqs_queue_url": f"{emulator.endpoint}/123456789012/unused",
        "download_folder": str(folder),
        "s3_bucket_name": bucket,
        "endpoint_url": emulator.endpoint,
        "workers": 3,
    }


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=2)
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture
def run_engine(s3: Any, pool: ThreadPoolExecutor) -> Callable[..., tuple[Tally, list[Planned]]]:
    """``run_engine(config_dict, wrap=None, **sync_options)``: one Sync run in this process."""

    def run(
        data: dict[str, Any],
        *,
        wrap: Callable[[Fetcher], Any] | None = None,
        bucket: str | None = None,
        prefix: str = "",
        **options: Any,
    ) -> tuple[Tally, list[Planned]]:
        gc.collect()  # the fetchers of an earlier run (in cycles) let go of the folder lock
        config = parse_config(data)
        dry = bool(options.get("dry_run"))
        made = sync_fetchers(config, s3=s3, parts=pool, prepare=not dry)
        fetchers: dict[Path, Any] = dict(made)
        if wrap is not None:
            fetchers = {path: wrap(f) for path, f in fetchers.items()}
        plans: list[Planned] = []
        engine = Sync(
            config=config,
            s3=s3,
            fetchers=fetchers,
            targets=targets(config, bucket=bucket, prefix=prefix),
            workers=config.workers,
            on_plan=plans.append,
            page_size=2,  # several pages even for a few objects
            **options,
        )
        for fetcher in fetchers.values():
            if isinstance(fetcher, _Hooked):
                fetcher.engine = engine
        try:
            return engine.run(), plans
        finally:
            for fetcher in made.values():
                fetcher.close()  # as the command does: the sync's temp sub-folder goes

    return run


class _Hooked:
    """A fetcher that lets a test act before the ``n``-th fetch (stop the run, delete...)."""

    def __init__(self, inner: Fetcher, before: Callable[[_Hooked, ObjectCreated], None]) -> None:
        self.inner = inner
        self.before = before
        self.calls = 0
        self.lock = threading.Lock()
        self.engine: Sync | None = None

    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult:
        with self.lock:
            self.calls += 1
        self.before(self, obj)
        return self.inner.fetch(obj, cancel=cancel, key_path=key_path)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the temp folder, by relative path."""
    found: dict[str, bytes] = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != TEMP_DIR_NAME]
        for name in names:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def summary(stderr: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (last,) = [line for line in lines if line.get("event") == "sync.summary"]
    return last


def sync_cli(tmp_path: Path, config: dict[str, Any], *args: str) -> Any:
    path = write_config(tmp_path / "sync.yaml", config)
    return run_cli(["sync", "--config", str(path), *args], timeout=120)


def test_cli_backfills_then_a_second_run_downloads_nothing(
    tmp_path: Path, s3: Any, bucket: str, folder: Path, base: dict[str, Any], xattrs: None
) -> None:
    """Objects uploaded before any daemon ran all arrive, verified, with provenance; the
    second run lists the same and downloads nothing."""
    wanted = {f"dir/{n}.bin": os.urandom(1000 + n) for n in range(7)}
    wanted["top.txt"] = b"top"
    for key, data in wanted.items():
        put(s3, bucket, key, data)
    first = sync_cli(tmp_path, base)
    assert first.returncode == EXIT_OK, first.stderr
    assert files(folder) == wanted
    record = read_provenance(folder / "top.txt")
    assert record is not None
    assert (record.bucket, record.key) == (bucket, "top.txt")
    got = summary(first.stderr)
    assert (got["listed"], got["downloaded"], got["failed"]) == (8, 8, 0)
    second = sync_cli(tmp_path, base)
    assert second.returncode == EXIT_OK, second.stderr
    again = summary(second.stderr)
    assert (again["listed"], again["downloaded"], again["skipped"]) == (8, 0, 8)
    assert files(folder) == wanted


def test_cli_dry_run_changes_nothing(
    tmp_path: Path, s3: Any, bucket: str, folder: Path, base: dict[str, Any]
) -> None:
    put(s3, bucket, "a.txt", b"a")
    put(s3, bucket, "b/c.txt", b"c")
    result = sync_cli(tmp_path, base, "--dry-run")
    assert result.returncode == EXIT_OK, result.stderr
    assert not folder.exists()  # not even the folder or its temp folder
    lines = sorted(result.stdout.splitlines())
    assert lines[0].startswith(f"download s3://{bucket}/a.txt -> {folder / 'a.txt'}")
    assert lines[1].startswith(f"download s3://{bucket}/b/c.txt -> {folder / 'b' / 'c.txt'}")
    assert summary(result.stderr)["dry_run"] is True


def test_cli_config_without_bucket_needs_one(
    tmp_path: Path, s3: Any, bucket: str, folder: Path, base: dict[str, Any]
) -> None:
    put(s3, bucket, "k", b"v")
    config = {**base}
    del config["s3_bucket_name"]
    refused = sync_cli(tmp_path, config)
    assert refused.returncode == EXIT_CONFIG
    assert "--bucket" in refused.stderr
    given = sync_cli(tmp_path, config, "--bucket", bucket)
    assert given.returncode == EXIT_OK, given.stderr
    assert files(folder) == {"k": b"v"}


def test_cli_failed_listing_is_reported_exit_1_and_the_rest_arrive(
    tmp_path: Path, s3: Any, bucket: str, folder: Path, base: dict[str, Any]
) -> None:
    """One bucket of two cannot be listed: one sync.failed line naming it, exit status 1,
    every object of the other bucket in place."""
    for n in range(5):
        put(s3, bucket, f"k{n}", b"x" * n)
    result = sync_cli(tmp_path, {**base, "s3_bucket_name": [bucket, "no-such-bucket-here"]})
    assert result.returncode == EXIT_FAILED
    failed = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and '"sync.failed"' in line
    ]
    assert len(failed) == 1
    assert "no-such-bucket-here" in failed[0]["message"]
    assert files(folder) == {f"k{n}": b"x" * n for n in range(5)}


def test_object_deleted_after_listing_fails_alone(
    s3: Any, bucket: str, folder: Path, base: dict[str, Any], run_engine: Any
) -> None:
    for n in range(6):
        put(s3, bucket, f"k{n}", b"v" * (n + 1))

    def delete_k3(hooked: _Hooked, obj: ObjectCreated) -> None:
        if obj.key == "k3":
            s3.delete_object(Bucket=bucket, Key="k3")

    tally, _ = run_engine(base, wrap=lambda f: _Hooked(f, delete_k3))
    assert (tally.listed, tally.downloaded, tally.failed) == (6, 5, 1)
    assert sorted(files(folder)) == ["k0", "k1", "k2", "k4", "k5"]


def test_interrupted_run_resumes_and_finishes(
    s3: Any, bucket: str, folder: Path, base: dict[str, Any], run_engine: Any
) -> None:
    """Stopped after 3 fetches: fewer arrive, nothing partial; the next run fetches only the
    rest (the ones in place are skipped), and the folder is complete."""
    wanted = {f"k{n:02d}": os.urandom(500) for n in range(12)}
    for key, data in wanted.items():
        put(s3, bucket, key, data)

    def stop_at_three(hooked: _Hooked, obj: ObjectCreated) -> None:
        if hooked.calls >= 3 and hooked.engine is not None:
            hooked.engine.stop()

    first, _ = run_engine({**base, "workers": 1}, wrap=lambda f: _Hooked(f, stop_at_three))
    assert first.interrupted
    got = files(folder)
    assert 2 <= len(got) < 12
    assert all(wanted[key] == data for key, data in got.items())
    assert temp_files(folder) == []
    second, _ = run_engine(base)
    assert not second.interrupted
    assert second.failed == 0
    assert second.downloaded == 12 - len(got)
    assert second.skipped == len(got)
    assert files(folder) == wanted


def test_conflict_is_left_and_reported(
    s3: Any, bucket: str, folder: Path, base: dict[str, Any], run_engine: Any, xattrs: None
) -> None:
    put(s3, bucket, "mine.txt", b"from s3")
    put(s3, bucket, "other.txt", b"other")
    folder.mkdir()
    (folder / "mine.txt").write_bytes(b"written by hand")
    tally, plans = run_engine(base)
    assert (tally.conflicts, tally.downloaded, tally.failed) == (1, 1, 0)
    assert (folder / "mine.txt").read_bytes() == b"written by hand"
    assert [(p.action, p.path.name) for p in plans if p.action == "conflict"] == [
        ("conflict", "mine.txt")
    ]


def test_newer_version_replaces_the_older_file(
    emulator: Emulator, s3: Any, folder: Path, base: dict[str, Any], run_engine: Any, xattrs: None
) -> None:
    """A versioned bucket: the file of version 1 is replaced by version 2 (the latest), and
    its provenance names version 2."""
    name = emulator.unique("versioned")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    config = {**base, "s3_bucket_name": name}
    put(s3, name, "doc", b"version one")
    run_engine(config)
    assert (folder / "doc").read_bytes() == b"version one"
    second = put(s3, name, "doc", b"version two, longer")
    tally, plans = run_engine(config)
    assert (tally.replaced, tally.downloaded) == (1, 0)
    assert [p.action for p in plans] == ["replace"]
    assert (folder / "doc").read_bytes() == b"version two, longer"
    record = read_provenance(folder / "doc")
    assert record is not None
    assert record.version_id == second["VersionId"]


def test_delete_removes_only_provenance_proven_orphans(
    s3: Any, bucket: str, folder: Path, base: dict[str, Any], run_engine: Any, xattrs: None
) -> None:
    for key in ("keep", "gone", "sub/gone2", "other/kept"):
        put(s3, bucket, key, key.encode())
    run_engine(base)
    (folder / "foreign.txt").write_bytes(b"mine")  # no provenance: never removed
    moved = folder / "moved-copy"  # our record, but not where the daemon puts its object
    moved.write_bytes(b"gone")
    os.setxattr(moved, XATTR_NAME, os.getxattr(folder / "gone", XATTR_NAME))
    for key in ("gone", "sub/gone2", "other/kept"):
        s3.delete_object(Bucket=bucket, Key=key)
    dry, plans = run_engine(base, delete=True, dry_run=True)
    assert dry.deleted == 3
    assert (folder / "gone").exists()
    assert sorted(p.path.name for p in plans if p.action == "delete") == ["gone", "gone2", "kept"]
    # A sync of another prefix deletes nothing outside it.
    narrow, _ = run_engine(base, delete=True, prefix="sub/")
    assert narrow.deleted == 1
    assert sorted(files(folder)) == ["foreign.txt", "gone", "keep", "moved-copy", "other/kept"]
    tally, _ = run_engine(base, delete=True)
    assert tally.deleted == 2
    assert sorted(files(folder)) == ["foreign.txt", "keep", "moved-copy"]


def test_delete_does_nothing_when_the_listing_failed(
    s3: Any, bucket: str, folder: Path, base: dict[str, Any], run_engine: Any, xattrs: None
) -> None:
    put(s3, bucket, "gone", b"g")
    run_engine(base)
    s3.delete_object(Bucket=bucket, Key="gone")

    class Failing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def list_objects_v2(self, **params: Any) -> Any:
            if "ContinuationToken" in params:
                raise s3.exceptions.NoSuchBucket(
                    {"Error": {"Code": "InternalError", "Message": "boom"}}, "ListObjectsV2"
                )
            return self.inner.list_objects_v2(**params)

    put(s3, bucket, "a", b"a")
    put(s3, bucket, "b", b"b")
    put(s3, bucket, "c", b"c")
    config = parse_config(base)
    engine = Sync(
        config=config,
        s3=Failing(s3),
        fetchers={},
        targets=targets(config),
        workers=1,
        delete=True,
        dry_run=True,
        page_size=2,
    )
    tally = engine.run()
    assert tally.failed == 1
    assert tally.deleted == 0
    assert not tally.listing_finished
    assert (folder / "gone").exists()


def test_routes_prefix_and_glob(
    s3: Any, bucket: str, tmp_path: Path, base: dict[str, Any], run_engine: Any
) -> None:
    """Only what a route takes is listed and stored, where its route puts it."""
    for key in ("reports/a.csv", "reports/b.txt", "images/x.png", "misc/y.csv"):
        put(s3, bucket, key, key.encode())
    reports, images = tmp_path / "reports", tmp_path / "images"
    config = {
        **{k: v for k, v in base.items() if k != "download_folder"},
        "routes": [
            {
                "prefix": "reports/",
                "glob": "*.csv",
                "download_folder": str(reports),
                "strip_prefix": True,
            },
            {"prefix": "images/", "download_folder": str(images)},
        ],
    }
    tally, _ = run_engine(config)
    assert files(reports) == {"a.csv": b"reports/a.csv"}
    assert files(images) == {"images/x.png": b"images/x.png"}
    assert (tally.listed, tally.downloaded, tally.unrouted) == (2, 2, 1)


def test_hostile_keys_are_refused_as_the_daemon_refuses_them(
    s3: Any, bucket: str, folder: Path, base: dict[str, Any], run_engine: Any
) -> None:
    for key in (f"{TEMP_DIR_NAME}/evil", "a//b", "fine"):
        put(s3, bucket, key, b"x")
    tally, _ = run_engine(base)
    assert (tally.failed, tally.downloaded) == (2, 1)
    assert files(folder) == {"fine": b"x"}
    assert temp_files(folder) == []


def test_config_targets_cover_routes(emulator: Emulator, bucket: str, base: dict[str, Any]) -> None:
    """A route prefix inside another's listing is not listed twice."""
    config: Config = parse_config(
        {
            **{k: v for k, v in base.items() if k != "download_folder"},
            "routes": [
                {"prefix": "a/b/", "download_folder": "/tmp/x1"},
                {"prefix": "a/", "download_folder": "/tmp/x2"},
            ],
        }
    )
    assert [(t.bucket, t.prefix) for t in targets(config)] == [(bucket, "a/")]


def test_on_download_runs_for_each_download_and_not_for_a_skip(
    tmp_path: Path,
    s3: Any,
    bucket: str,
    folder: Path,
    base: dict[str, Any],
    run_engine: Any,
    xattrs: None,
) -> None:
    """The daemon's on_download, with the file's facts (no message id: there is none)."""
    seen = tmp_path / "seen"
    script = 'printf "%s|%s|%s\\n" "$S3SQSD_KEY" "$S3SQSD_PATH" "$S3SQSD_MESSAGE_ID" >> "$1"'
    config = {**base, "on_download": {"command": ["/bin/sh", "-c", script, "sh", str(seen)]}}
    put(s3, bucket, "a", b"1")
    put(s3, bucket, "b/c", b"2")
    tally, _ = run_engine(config)
    assert tally.downloaded == 2
    assert sorted(seen.read_text().splitlines()) == [f"a|{folder / 'a'}|", f"b/c|{folder / 'b/c'}|"]
    run_engine(config)
    assert len(seen.read_text().splitlines()) == 2


def test_cli_ctrl_c_stops_cleanly_with_130_and_a_rerun_finishes(
    tmp_path: Path, s3: Any, bucket: str, folder: Path, base: dict[str, Any], xattrs: None
) -> None:
    """SIGINT (Ctrl-C) once the first file is in: exit 130, a sync.stopping line, no temp
    file left; the next run completes the folder."""
    wanted = {f"k{n:03d}": n.to_bytes(2, "big") * 50 for n in range(300)}
    for key, data in wanted.items():
        put(s3, bucket, key, data)
    path = write_config(tmp_path / "sync.yaml", {**base, "workers": 1})
    process = subprocess.Popen(
        [sys.executable, "-m", "s3sqsd", "sync", "--config", str(path)],
        env=daemon_env(),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if '"object.downloaded"' in line:
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=60)
    lines.append(rest)
    if process.returncode == EXIT_OK:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == 130, "".join(lines)
    assert '"sync.stopping"' in "".join(lines)
    assert summary("".join(lines))["interrupted"] is True
    assert temp_files(folder) == []
    assert len(files(folder)) < len(wanted)
    again = sync_cli(tmp_path, base)
    assert again.returncode == EXIT_OK, again.stderr
    assert files(folder) == wanted
