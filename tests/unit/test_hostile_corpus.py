"""The hostile message corpus (tests/data/hostile, format in its README) through the decisions
the daemon makes before any I/O: the worker's ``plan_message`` (parse, bucket allow-list,
routing), then local_path.

Each body must end in exactly the expected refusal (error class and ``reason``) or, for the
few accepted look-alikes, in the expected literal path inside the folder; never in another
exception, never in a path outside the root. The same corpus runs through the real daemon in
tests/integration/test_hostile_corpus_daemon.py, which imports the loader from here.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.errors import (
    BucketNotAllowedError,
    KeyDecodingError,
    MessageFormatError,
    PermanentError,
    UnsafeKeyError,
)
from s3sqsd.events import ObjectCreated, OtherRecord
from s3sqsd.fetcher import FetchResult, RemoveOutcome
from s3sqsd.paths import local_path
from s3sqsd.provenance import Origin
from s3sqsd.routing import Placement
from s3sqsd.worker import WorkerSettings, plan_message
from s3sqsd.worker.plan import FetchItem

CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "hostile"
CORPUS_BUCKET = "hostile-corpus"
OBJECT_CONTENT = b"hostile\n"  # what accepted entries announce (size 8, MD5 ETag)

ERRORS: dict[str, type[PermanentError]] = {
    "bad_message": MessageFormatError,
    "bad_key_encoding": KeyDecodingError,
    "unsafe_key": UnsafeKeyError,
    "bucket_not_allowed": BucketNotAllowedError,
}

# What SQS accepts in a body (AWS's SendMessage reference); anything else is refused there.
_NOT_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\.json")


@dataclass(frozen=True)
class Entry:
    name: str
    note: str
    reason: str | None  # None: accepted
    path: str | None  # accepted entries: the file written, relative to the folder (or None)
    body: str
    sqs: bool


def load_corpus() -> list[Entry]:
    entries = []
    for file in sorted(CORPUS_DIR.glob("*.json")):
        raw: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
        assert ("body" in raw) != ("json" in raw), f"{file.name}: exactly one of body, json"
        body = raw["body"] if "body" in raw else json.dumps(raw["json"])
        assert isinstance(body, str), file.name
        entries.append(
            Entry(
                name=file.stem,
                note=raw["note"],
                reason=raw["reason"],
                path=raw.get("path"),
                body=body,
                sqs=raw.get("sqs", True),
            )
        )
    return entries


def sqs_can_carry(body: str) -> bool:
    return bool(body) and _NOT_SQS.search(body) is None


@dataclass(frozen=True)
class Decision:
    """What the daemon decides for a body before any I/O."""

    error: PermanentError | None
    created: tuple[ObjectCreated, ...]
    paths: tuple[Path, ...]  # local paths of the created objects (folder markers left out)


class _NoFetcher:
    """Never called: the decisions are made before any I/O."""

    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult:
        raise AssertionError("fetched while deciding")

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        raise AssertionError("removed while deciding")


_PLACEMENT = Placement(folder=_NoFetcher())
_SETTINGS = WorkerSettings(allowed_buckets=frozenset({CORPUS_BUCKET}))


def decide(body: str, root: Path) -> Decision:
    """The worker's own decisions (``plan_message``: parse, then the allow-list for every
    object), then ``local_path`` for each download in order, stopping at the first refusal."""
    plan = plan_message(body=body, settings=_SETTINGS, place=lambda _bucket, _key: _PLACEMENT)
    created = tuple(item.obj for item in plan.items if isinstance(item, FetchItem))
    paths: list[Path] = []
    if plan.error is not None:
        assert isinstance(plan.error, PermanentError), repr(plan.error)
        return Decision(plan.error, created, ())
    try:
        for obj in created:
            path = local_path(root, obj.key, bucket=obj.bucket)
            if path is not None:
                paths.append(path)
    except PermanentError as exc:  # anything else is a bug and fails the test as it is
        return Decision(exc, created, tuple(paths))
    return Decision(None, created, tuple(paths))


CORPUS = load_corpus()
ROOT = Path("/srv/s3sqsd/downloads")


def test_the_corpus_is_large_and_well_formed() -> None:
    assert len(CORPUS) >= 60
    names = [file.name for file in CORPUS_DIR.glob("*.json")]
    assert all(_NAME.fullmatch(name) for name in names), names
    reasons = {entry.reason for entry in CORPUS}
    assert reasons == {*ERRORS, None}
    for entry in CORPUS:
        assert entry.note, entry.name
        if entry.reason is not None:
            assert entry.path is None, entry.name
    # Every topic the corpus promises is there.
    prefixes = {entry.name.split("-")[0] for entry in CORPUS}
    assert prefixes >= {
        "traversal", "literal", "control", "overlong", "encoding", "body", "type", "sns",
        "eventbridge", "bucket",
    }  # fmt: skip


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_sqs_flag_matches_what_sqs_accepts(entry: Entry) -> None:
    assert entry.sqs == sqs_can_carry(entry.body), entry.note


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_entry(entry: Entry) -> None:
    decision = decide(entry.body, ROOT)
    for path in decision.paths:
        assert path.is_relative_to(ROOT), path
        assert path != ROOT
        assert os.path.normpath(path) == str(path), path
        assert os.path.commonpath([ROOT, os.path.normpath(path)]) == str(ROOT)
    if entry.reason is None:
        assert decision.error is None, f"{entry.note}: refused with {decision.error!r}"
        expected = () if entry.path is None else (ROOT / entry.path,)
        assert decision.paths == expected
        if entry.path is not None:
            # one literal name per key segment: nothing was reinterpreted on the way
            (obj,) = decision.created
            assert Path(entry.path).parts == tuple(obj.key.split("/"))
        return
    error = decision.error
    assert error is not None, f"{entry.note}: accepted as {decision.paths}"
    assert type(error) is ERRORS[entry.reason], f"{entry.note}: {error!r}"
    assert error.reason == entry.reason
    text = str(error)
    assert len(text) < 600, text[:200]
    assert "\n" not in text
    assert "\x00" not in text


def test_errors_never_echo_a_large_body() -> None:
    for entry in CORPUS:
        if len(entry.body) < 5000:
            continue
        error = decide(entry.body, ROOT).error
        assert error is not None, entry.name
        assert entry.body[:300] not in str(error), entry.name
