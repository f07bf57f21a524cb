"""``s3sqsd check`` end to end: the real command against the emulator, good and broken setups.

Every run also shows the check changes nothing: messages placed in the queue and the DLQ
beforehand are still visible afterwards with an unchanged receive count, nothing is in flight,
and nothing appears in (or as) the download folder.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.checksums import HostChecksums
from s3sqsd.paths import TEMP_DIR_NAME
from tests.support.daemon import closed_port, run_cli, write_config
from tests.support.emulator import Emulator, Pipeline

pytestmark = pytest.mark.integration

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 78

# Canary credentials: the emulator accepts any, and none of these may ever be printed.
CANARY_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIACANARYPREFLIGHT1",
    "AWS_SECRET_ACCESS_KEY": "canary-secret-do-not-print",
    "AWS_SESSION_TOKEN": "canary-token-do-not-print",
}


@dataclass(frozen=True)
class Line:
    verdict: str
    name: str
    detail: str


@dataclass(frozen=True)
class CheckRun:
    returncode: int
    lines: list[Line]
    summary: str
    stdout: str
    stderr: str
    seconds: float

    def named(self, name: str) -> list[Line]:
        return [line for line in self.lines if line.name == name]

    def one(self, name: str) -> Line:
        (line,) = self.named(name)
        return line

    def verdicts(self, verdict: str) -> list[Line]:
        return [line for line in self.lines if line.verdict == verdict]


# The ``checksums`` line warns on a host that cannot verify CRC64NVME or CRC32C (bookworm's
# awscrt 0.16.8 has no CRC64NVME): on such a test host it is one warning more.
HOST = HostChecksums.detect()
CHECKSUMS_WARN = ("checksums",) if not (HOST.can("CRC64NVME") and HOST.can("CRC32C")) else ()
ALL_PASSED = "s3sqsd: no failures, 1 warning" if CHECKSUMS_WARN else "s3sqsd: all checks passed"


def run_check(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str | None] | None = None
) -> CheckRun:
    path = write_config(tmp_path / "preflight.yaml", config)
    started = time.monotonic()
    result = run_cli(
        ["check", "--config", str(path)], env={**CANARY_ENV, **(env or {})}, timeout=60
    )
    seconds = time.monotonic() - started
    out = result.stdout.splitlines()
    lines = []
    for text in out[:-1]:
        verdict, name, detail = text.split(None, 2)
        lines.append(Line(verdict, name, detail))
    run = CheckRun(
        returncode=result.returncode,
        lines=lines,
        summary=out[-1] if out else "",
        stdout=result.stdout,
        stderr=result.stderr,
        seconds=seconds,
    )
    for secret in CANARY_ENV.values():
        assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert all(line.verdict in ("ok", "warn", "FAIL", "skip") for line in run.lines), run.stdout
    return run


class Untouched:
    """Puts one message in each queue and remembers the folder; ``verify`` proves the check
    changed neither."""

    def __init__(self, emulator: Emulator, queues: list[str], folder: Path) -> None:
        self.emulator = emulator
        self.queues = queues
        self.folder = folder
        self.sqs = emulator.client("sqs")
        self.bodies = {}
        for url in queues:
            body = f"preflight canary for {url}"
            self.sqs.send_message(QueueUrl=url, MessageBody=body)
            self.bodies[url] = body
        self.counts = {url: emulator.queue_counts(url) for url in queues}
        assert all(count == (1, 0) for count in self.counts.values())
        self.folder_state = self._folder_state()

    def _folder_state(self) -> tuple[bool, list[str], int | None]:
        if not self.folder.exists():
            return (False, [], None)
        entries = sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*"))
        return (True, entries, self.folder.stat().st_mtime_ns)

    def verify(self) -> None:
        for url in self.queues:
            assert self.emulator.queue_counts(url) == self.counts[url] == (1, 0)
            messages = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                AttributeNames=["ApproximateReceiveCount"],
            )["Messages"]
            assert [m["Body"] for m in messages] == [self.bodies[url]]
            # Received for the first time now: the check received nothing.
            assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "1"
        assert self._folder_state() == self.folder_state
        assert not (self.folder / TEMP_DIR_NAME).exists()


@pytest.fixture
def untouched(emulator: Emulator) -> Callable[..., Untouched]:
    def make(queues: list[str | None], folder: Path) -> Untouched:
        return Untouched(emulator, [url for url in queues if url is not None], folder)

    return make


@pytest.fixture
def mounts() -> Iterator[Callable[..., Path]]:
    """``mount(dir, options)``: a small tmpfs at ``dir`` (root only), unmounted at teardown."""
    mounted: list[Path] = []

    def mount(path: Path, options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"{options},size=1M", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=False)


# ---- a good setup --------------------------------------------------------------------------


@pytest.mark.parametrize("dlq_url", [False, True], ids=["redrive", "redrive+dlq_url"])
def test_good_setup_every_line_ok_and_nothing_changed(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    untouched: Callable[..., Untouched],
    tmp_path: Path,
    dlq_url: bool,
) -> None:
    pipeline = emulator.pipeline(redrive=True)
    config = make_config(pipeline, dead_letter_queue_url=pipeline.dlq_url if dlq_url else None)
    before = untouched([pipeline.queue_url, pipeline.dlq_url], download_folder)

    run = run_check(tmp_path, config)

    assert run.returncode == EXIT_OK, run.stdout
    assert run.lines
    assert [
        line for line in run.lines if line.verdict != "ok" and line.name not in CHECKSUMS_WARN
    ] == [], run.stdout
    assert run.summary == ALL_PASSED
    assert run.stderr == ""
    names = [line.name for line in run.lines]
    expected = ["config", "checksums", "credentials", "network", "identity", "queue"]
    expected += ["queue-type", "retention", "timeouts"]
    expected += ["redrive", "max-receives", "dlq-retention"]
    expected += ["dlq-url"] if dlq_url else []
    expected += ["bucket", "sync-list", "folder", "free-space"]
    assert names == expected
    assert run.one("sync-list").detail == f"s3://{pipeline.bucket}/: s3sqsd sync can list it"
    assert run.one("credentials").detail == "found (source: env)"
    endpoint = config["endpoint_url"]
    assert run.one("network").detail == (
        f"S3 {endpoint}; SQS {endpoint}; STS {endpoint}; no proxy (none configured, none in "
        "the environment); botocore's default CA certificates"
    )
    assert run.one("identity").detail.startswith(
        "queue, buckets: the host's own credentials, as arn:aws:"
    )
    assert run.one("queue").detail.startswith(f"{pipeline.queue_url}: exists; 1 visible")
    assert run.one("bucket").detail == f"{pipeline.bucket}: reachable"
    before.verify()


def test_folder_that_does_not_exist_yet_is_ok_and_not_created(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    untouched: Callable[..., Untouched],
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    folder = tmp_path / "not" / "yet"
    before = untouched([pipeline.queue_url], folder)
    run = run_check(tmp_path, make_config(pipeline, download_folder=str(folder)))
    assert run.returncode == EXIT_OK, run.stdout
    assert "does not exist yet; the daemon creates it" in run.one("folder").detail
    assert not (tmp_path / "not").exists()
    before.verify()


def test_config_from_the_environment_variable(
    emulator: Emulator, make_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    path = write_config(tmp_path / "env.yaml", make_config(emulator.pipeline()))
    result = run_cli(["check"], env={"S3SQSD_CONFIG": str(path)})
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert f"ok    config         {path}: valid" in result.stdout.splitlines()


# ---- broken setups: one FAIL each ------------------------------------------------------------


def only_failure(run: CheckRun, name: str) -> Line:
    assert run.returncode == EXIT_FAILED, run.stdout
    assert [line.name for line in run.verdicts("FAIL")] == [name], run.stdout
    assert run.summary.startswith("s3sqsd: 1 check FAILED"), run.summary
    return run.verdicts("FAIL")[0]


def test_missing_queue(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    missing = f"{emulator.endpoint}/123456789012/{emulator.unique('missing')}"
    run = run_check(tmp_path, make_config(pipeline, sqs_queue_url=missing))
    line = only_failure(run, "queue")
    assert line.detail == f"{missing}: no such queue (check the URL, the account and the region)"
    assert run.one("queue-settings").verdict == "skip"
    assert run.one("bucket").verdict == "ok"  # the rest is still checked


def test_dead_letter_queue_url_that_does_not_exist(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    untouched: Callable[..., Untouched],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline(redrive=True)
    missing = f"{emulator.endpoint}/123456789012/{emulator.unique('gone-dlq')}"
    before = untouched([pipeline.queue_url, pipeline.dlq_url], download_folder)
    run = run_check(tmp_path, make_config(pipeline, dead_letter_queue_url=missing))
    line = only_failure(run, "dlq-url")
    assert line.detail.startswith(f"{missing}: no such queue")
    assert run.one("redrive").verdict == "ok"
    before.verify()


def test_no_redrive_policy_and_no_dead_letter_queue_url(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    untouched: Callable[..., Untouched],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline(redrive=False)
    before = untouched([pipeline.queue_url], download_folder)
    run = run_check(tmp_path, make_config(pipeline))
    line = only_failure(run, "redrive")
    assert "no redrive policy and dead_letter_queue_url is not set" in line.detail
    assert run.named("max-receives") == []
    before.verify()


def test_redrive_target_that_was_deleted(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline(redrive=True)
    assert pipeline.dlq_url is not None
    emulator.client("sqs").delete_queue(QueueUrl=pipeline.dlq_url)
    run = run_check(tmp_path, make_config(pipeline))
    line = only_failure(run, "redrive")
    assert "which does not exist" in line.detail


def test_bucket_that_does_not_exist(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    missing = emulator.unique("no-such-bucket")
    run = run_check(tmp_path, make_config(pipeline, s3_bucket_name=[pipeline.bucket, missing]))
    line = only_failure(run, "bucket")
    assert line.detail == f"{missing}: no such bucket"
    assert [line.detail for line in run.named("bucket")] == [
        f"{pipeline.bucket}: reachable",
        f"{missing}: no such bucket",
    ]
    assert [line.verdict for line in run.named("sync-list")] == ["ok", "skip"]


@pytest.mark.parametrize("layout", ["folder", "parent"])
def test_read_only_download_folder(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    mounts: Callable[..., Path],
    tmp_path: Path,
    layout: str,
) -> None:
    """Root ignores mode bits, so the folder is on a read-only tmpfs: ``folder`` is the mount
    itself, ``parent`` a folder still to be created inside it."""
    read_only = mounts(tmp_path / "ro", "ro")
    folder = read_only if layout == "folder" else read_only / "downloads"
    run = run_check(tmp_path, make_config(emulator.pipeline(), download_folder=str(folder)))
    line = only_failure(run, "folder")
    if layout == "folder":
        assert line.detail == f"{folder}: not writable (read-only file system)"
    else:
        assert line.detail == (
            f"{folder}: does not exist and the daemon cannot create it: {read_only} is not "
            "writable (read-only file system)"
        )
    assert list(read_only.iterdir()) == []


def test_temp_folder_on_another_file_system(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    mounts: Callable[..., Path],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    temp = mounts(download_folder / TEMP_DIR_NAME, "rw")
    run = run_check(tmp_path, make_config(emulator.pipeline()))
    line = only_failure(run, "folder")
    assert line.detail.startswith(f"{temp}: the temp folder is on another file system")
    assert list(temp.iterdir()) == []


def test_unreachable_endpoint_is_one_failure_and_quick(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    dead = f"http://127.0.0.1:{closed_port()}"
    run = run_check(tmp_path, make_config(pipeline, endpoint_url=dead))
    line = only_failure(run, "queue")
    assert "the SQS endpoint cannot be reached" in line.detail
    assert dead in line.detail
    assert run.one("bucket").verdict == "skip"
    assert run.one("bucket").detail.endswith(f"the endpoint {dead} is unreachable")
    assert run.seconds < 20, run.seconds
    assert run.stderr == ""


def test_no_credentials(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    env: dict[str, str | None] = {name: None for name in CANARY_ENV}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    path = write_config(tmp_path / "c.yaml", make_config(emulator.pipeline()))
    result = run_cli(["check", "--config", str(path)], env=env, timeout=60)
    assert result.returncode == EXIT_FAILED, result.stdout
    out = result.stdout.splitlines()
    assert [text.split()[:2] for text in out[:-1] if not text.startswith(("ok", "warn"))] == [
        ["FAIL", "credentials"],
        ["skip", "queue"],
        ["skip", "buckets"],
        ["skip", "sync-list"],
    ]
    assert "Traceback" not in result.stderr


def test_invalid_config_is_exit_78_on_stderr(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", {"download_folder": "relative"})
    result = run_cli(["check", "--config", str(path)])
    assert result.returncode == EXIT_CONFIG
    assert result.stdout == ""
    assert f"s3sqsd: {path}: sqs_queue_url: required key is missing" in result.stderr
    assert f"s3sqsd: {path}: download_folder: must be an absolute path" in result.stderr


# ---- warnings: exit 0 -----------------------------------------------------------------------


def only_warnings(run: CheckRun, *names: str) -> None:
    assert run.returncode == EXIT_OK, run.stdout
    assert run.verdicts("FAIL") == []
    names = (*names, *CHECKSUMS_WARN)
    assert sorted(line.name for line in run.verdicts("warn")) == sorted(names), run.stdout
    assert run.summary.startswith(f"s3sqsd: no failures, {len(names)} warning"), run.summary


def test_max_receive_count_below_max_attempts(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    untouched: Callable[..., Untouched],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline(redrive=True, max_receive_count=2)
    before = untouched([pipeline.queue_url, pipeline.dlq_url], download_folder)
    run = run_check(tmp_path, make_config(pipeline))  # retry.max_attempts 3
    only_warnings(run, "max-receives")
    assert run.one("max-receives").detail.startswith(
        "maxReceiveCount 2 is below retry.max_attempts 3"
    )
    before.verify()


def test_short_retention(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline(redrive=True)
    sqs = emulator.client("sqs")
    sqs.set_queue_attributes(
        QueueUrl=pipeline.queue_url, Attributes={"MessageRetentionPeriod": "600"}
    )
    sqs.set_queue_attributes(
        QueueUrl=pipeline.dlq_url, Attributes={"MessageRetentionPeriod": "300"}
    )
    retry = {"max_attempts": 5, "base_delay_seconds": 2, "max_delay_seconds": 300}
    run = run_check(tmp_path, make_config(pipeline, retry=retry))
    only_warnings(run, "retention", "dlq-retention")
    assert run.one("retention").detail.startswith(
        "the queue keeps messages 10 min, less than 2 x the 25 min s3sqsd's retries can take"
    )
    assert "keeps messages 5 min, less than the queue's 10 min" in run.one("dlq-retention").detail


def test_fifo_queue(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    sqs = emulator.client("sqs")
    fifo = sqs.create_queue(
        QueueName=emulator.unique("fifo") + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    dlq, _ = emulator.create_queue(emulator.unique("dlq"))
    pipeline = Pipeline(
        bucket=emulator.pipeline().bucket,
        queue_url=fifo,
        queue_arn="",
        dlq_url=dlq,
        topic_arn=None,
        via="eventbridge",
    )
    run = run_check(tmp_path, make_config(pipeline, dead_letter_queue_url=dlq))
    only_warnings(run, "queue-type")
    assert "S3 event notifications cannot target FIFO queues" in run.one("queue-type").detail


def test_no_allow_list_skips_the_bucket_check(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    run = run_check(tmp_path, make_config(emulator.pipeline(), s3_bucket_name=None))
    assert run.returncode == EXIT_OK, run.stdout
    assert run.one("buckets").verdict == "skip"
    assert "no s3_bucket_name allow-list" in run.one("buckets").detail
    assert run.named("bucket") == []
    assert "s3sqsd sync needs --bucket" in run.one("sync-list").detail
    assert run.summary == ALL_PASSED


def test_every_route_folder_is_checked(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    mounts: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """With routes, each route's folder gets its own folder and free-space lines."""
    good = tmp_path / "good"
    read_only = mounts(tmp_path / "ro", "ro")
    config = make_config(
        emulator.pipeline(),
        download_folder=None,
        routes=[
            {"prefix": "a/", "download_folder": str(good)},
            {"download_folder": str(read_only)},
        ],
    )
    run = run_check(tmp_path, config)
    folders = run.named("folder")
    assert len(folders) == 2
    assert folders[0].verdict == "ok"
    assert folders[1].detail == f"{read_only}: not writable (read-only file system)"
    assert len(run.named("free-space")) == 2


def test_free_space_below_min_free_bytes_is_a_warning_naming_the_floor(
    emulator: Emulator, make_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """A floor above what the disk has: the daemon would hold every download, so check says
    so (a warning: nothing is lost, and space may be freed before the first event)."""
    config = make_config(emulator.pipeline(), min_free_bytes=1 << 50)  # 1 PiB: the most
    run = run_check(tmp_path, config)
    line = run.one("free-space")
    assert line.verdict == "warn"
    assert "min_free_bytes 1024.0 TiB" in line.detail
    assert "below min_free_bytes: downloads wait until space is freed" in line.detail
