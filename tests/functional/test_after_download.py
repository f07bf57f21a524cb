"""after_download: delete in the worker, against an in-memory queue and a scripted fetcher:
the source's delete comes after the command and before the message's; what each answer does
to the message; keep, stale and a failed command never ask for a delete."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from s3sqsd.config import CommandConfig
from s3sqsd.errors import SourceDeleteError
from s3sqsd.events import ObjectCreated
from s3sqsd.metrics import Metrics
from s3sqsd.outcomes import FetchOutcome, FetchResult
from s3sqsd.routing import Placement
from s3sqsd.sources import Answer, Kept, Target
from s3sqsd.worker import WorkerSettings
from tests.functional.test_worker import ScriptedFetcher, running
from tests.support.emulator import wait_until
from tests.support.events import notification, s3_record
from tests.support.stub_queue import StubQueue

DELETED = Answer(None)
SETTINGS = WorkerSettings(workers=1, wait_time_seconds=1, base_delay_seconds=30)


class Deleting(ScriptedFetcher):
    """A scripted fetcher that records each source delete and what the queue held then."""

    def __init__(self, outcome: FetchOutcome, answer: Answer | Exception, queue: StubQueue):
        super().__init__(lambda obj, cancel: self.result(obj))
        self.outcome = outcome
        self.answer = answer
        self.queue = queue
        self.deletes: list[Target] = []
        self.remaining_at_delete: list[list[str]] = []

    def result(self, obj: ObjectCreated) -> FetchResult:
        return FetchResult(
            outcome=self.outcome,
            path=Path("/srv/x") / obj.key,
            size=3,
            etag="e1",
            version_id="v1",
            duration_ms=1,
            same_event=self.outcome is FetchOutcome.DUPLICATE,
        )

    def delete_source(self, target: Target) -> Answer:
        self.deletes.append(target)
        self.remaining_at_delete.append(self.queue.remaining())
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def body() -> str:
    return notification(s3_record("inbox", "a.csv", size=3, eTag="e1", versionId="v1"))


def run(
    outcome: FetchOutcome,
    answer: Answer | Exception = DELETED,
    *,
    after_download: str = "delete",
    command: CommandConfig | None = None,
) -> tuple[StubQueue, Deleting, str, Metrics]:
    queue = StubQueue()
    message_id = queue.put(body())
    fetcher = Deleting(outcome, answer, queue)
    with running(
        queue,
        fetcher,
        settings=SETTINGS,
        place=lambda b, k: Placement(
            folder=fetcher, on_download=command, after_download=after_download
        ),
    ) as (worker, _stop):
        wait_until(lambda: queue.deleted or queue.visibility_calls, timeout=15, what="settled")
    return queue, fetcher, message_id, worker.metrics


def test_the_source_goes_after_the_command_and_before_the_message(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho x > {ran}\n")
    hook.chmod(0o755)
    command = CommandConfig(command=(str(hook),), timeout_seconds=5)

    queue, fetcher, message_id, metrics = run(FetchOutcome.DOWNLOADED, command=command)

    assert fetcher.deletes == [Target("inbox", "a.csv", "v1", "e1")]
    assert fetcher.remaining_at_delete == [[message_id]]  # the message was still there
    assert ran.exists()
    assert queue.deleted == [message_id]
    assert metrics.get("sources_deleted") == 1


def test_a_failed_command_deletes_nothing(tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\nexit 3\n")
    hook.chmod(0o755)
    command = CommandConfig(command=(str(hook),), timeout_seconds=5)
    queue, fetcher, message_id, _metrics = run(FetchOutcome.DOWNLOADED, command=command)
    assert fetcher.deletes == []
    assert queue.deleted == []
    assert queue.visibility_calls[0][0] == message_id


@pytest.mark.parametrize(
    ("outcome", "after_download"),
    [
        (FetchOutcome.DOWNLOADED, "keep"),
        (FetchOutcome.STALE, "delete"),
        (FetchOutcome.FOLDER_MARKER, "delete"),
    ],
)
def test_keep_and_stale_never_ask_for_a_delete(outcome: FetchOutcome, after_download: str) -> None:
    queue, fetcher, message_id, metrics = run(outcome, after_download=after_download)
    assert fetcher.deletes == []
    assert queue.deleted == [message_id]
    stale = outcome is FetchOutcome.STALE
    assert metrics.get("sources_kept", reason="stale") == (1 if stale else 0)


def test_this_events_own_duplicate_deletes_the_recorded_version() -> None:
    """A retry of the message finds the file it wrote: the delete it could not do is done."""
    queue, fetcher, message_id, _metrics = run(FetchOutcome.DUPLICATE)
    assert fetcher.deletes == [Target("inbox", "a.csv", "v1", "e1")]
    assert queue.deleted == [message_id]


def test_a_transient_delete_failure_retries_the_message() -> None:
    error = SourceDeleteError("DELETE s3://inbox/a.csv failed: SlowDown (HTTP 503)")
    queue, fetcher, message_id, _metrics = run(FetchOutcome.DOWNLOADED, error)
    assert len(fetcher.deletes) == 1
    assert queue.deleted == []
    assert queue.visibility_calls[0][0] == message_id


@pytest.mark.parametrize(
    ("kept", "level"),
    [
        (Kept.ACCESS_DENIED, logging.WARNING),
        (Kept.UNCONDITIONAL_ONLY, logging.WARNING),
        (Kept.CHANGED, logging.INFO),
        (Kept.ABSENT, logging.INFO),
    ],
)
def test_a_refused_delete_keeps_the_source_and_still_deletes_the_message(
    kept: Kept, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="s3sqsd")
    queue, _fetcher, message_id, metrics = run(
        FetchOutcome.DOWNLOADED, Answer(kept, "Code (HTTP 4xx)")
    )
    assert queue.deleted == [message_id]
    lines = [r for r in caplog.records if getattr(r, "event", None) == "source.kept"]
    assert [(r.levelno, r.reason, r.version_id) for r in lines] == [(level, kept.value, "v1")]  # type: ignore[attr-defined]
    assert "s3://inbox/a.csv (version v1)" in lines[0].getMessage()
    assert metrics.get("sources_kept", reason=kept.value) == 1
    assert metrics.get("sources_deleted") == 0


def test_a_drain_cancel_before_the_delete_releases_the_message() -> None:
    """The stop's deadline passed after the command: no delete is started; the message comes
    back, and its next delivery (this event's own file) deletes."""
    queue = StubQueue()
    message_id = queue.put(body())
    cancels: list[threading.Event] = []
    go = threading.Event()

    class Cancelling(Deleting):
        def result(self, obj: ObjectCreated) -> FetchResult:
            assert go.wait(10)
            cancels[0].set()  # what the drain deadline does, once the file is in place
            return super().result(obj)

    fetcher = Cancelling(FetchOutcome.DOWNLOADED, Answer(None), queue)
    with running(
        queue,
        fetcher,
        settings=SETTINGS,
        place=lambda b, k: Placement(folder=fetcher, after_download="delete"),
    ) as (worker, _stop):
        cancels.append(worker._downloads.cancel)
        go.set()
        wait_until(lambda: queue.deleted or queue.visibility_calls, timeout=15, what="settled")
    assert fetcher.deletes == []
    assert queue.deleted == []
    assert queue.visibility_calls[0][0] == message_id
