"""after_download: delete against the emulator (moto over HTTP, which enforces If-Match on
DeleteObject as S3 does): what a fetch plans and what the delete does to the bucket. Exactly
the downloaded version goes; a newer version, or an unversioned key written again, stays."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3sqsd import sources
from s3sqsd.fetcher import Fetcher, FetchOutcome
from s3sqsd.sources import Answer, Kept, Target, source_plan
from tests.integration.test_preflight import run_check
from tests.support.emulator import Emulator
from tests.support.fetching import created, put

pytestmark = pytest.mark.integration


@pytest.fixture
def fetcher(make_fetcher: Callable[..., Fetcher], xattrs: None) -> Fetcher:
    return make_fetcher()


def announced(bucket: str, key: str, answer: dict[str, Any], **fields: Any) -> Any:
    return created(
        bucket,
        key,
        size=fields.pop("size", 3),
        etag=str(answer["ETag"]).strip('"'),
        version_id=answer.get("VersionId"),
        **fields,
    )


def exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


def versions(s3: Any, bucket: str, key: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in listed if v["Key"] == key]


def test_a_versioned_delete_removes_the_downloaded_version_only(
    fetcher: Fetcher, s3: Any, bucket: str
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = put(s3, bucket, "in/a.csv", b"one")
    newer = put(s3, bucket, "in/a.csv", b"two")  # uploaded before the delete
    obj = announced(bucket, "in/a.csv", first, sequencer="0A")
    result = fetcher.fetch(obj, cancel=threading.Event())
    assert result.outcome is FetchOutcome.DOWNLOADED
    target = source_plan(obj, result)
    assert target == Target(bucket, "in/a.csv", first["VersionId"], obj.etag)

    assert fetcher.delete_source(target) == Answer(None)

    assert versions(s3, bucket, "in/a.csv") == [newer["VersionId"]]
    assert s3.get_object(Bucket=bucket, Key="in/a.csv")["Body"].read() == b"two"


@pytest.mark.parametrize("native", [True, False], ids=["IfMatch", "handlers"])
def test_an_unversioned_key_written_again_since_the_get_is_kept(
    fetcher: Fetcher,
    s3: Any,
    bucket: str,
    native: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The conditional delete, both ways of sending If-Match (botocore's parameter, and the
    handlers bookworm's botocore needs): 412 for the newer object, which stays; the object's
    own ETag deletes it."""
    if not native:
        monkeypatch.setattr(sources, "has_if_match", lambda _s3: False)
    elif not sources.has_if_match(s3):
        pytest.skip("this botocore has no IfMatch on DeleteObject")
    old = put(s3, bucket, "a.csv", b"old")
    obj = announced(bucket, "a.csv", old, sequencer="0A")
    result = fetcher.fetch(obj, cancel=threading.Event())
    target = source_plan(obj, result)
    assert isinstance(target, Target)
    assert target.version_id is None

    put(s3, bucket, "a.csv", b"new")  # between the GET and the delete
    answer = fetcher.delete_source(target)
    assert answer.kept is Kept.CHANGED
    assert "412" in answer.detail
    assert s3.get_object(Bucket=bucket, Key="a.csv")["Body"].read() == b"new"
    assert result.path is not None
    assert result.path.read_bytes() == b"old"

    current = s3.head_object(Bucket=bucket, Key="a.csv")
    same = Target(bucket, "a.csv", None, str(current["ETag"]).strip('"'))
    assert fetcher.delete_source(same) == Answer(None)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert fetcher.delete_source(same).kept is Kept.ABSENT


def test_a_retry_of_the_same_event_deletes_and_another_event_does_not(
    fetcher: Fetcher, s3: Any, bucket: str
) -> None:
    """The second look at a file: this event's own download (an earlier attempt) may complete
    its delete; the same object announced by another event (no sequencer, another time:
    moto announces one upload twice) may not."""
    answer = put(s3, bucket, "a.csv", b"abc")
    obj = announced(bucket, "a.csv", answer, sequencer="0A", event_time="2026-01-01T00:00:00Z")
    assert fetcher.fetch(obj, cancel=threading.Event()).outcome is FetchOutcome.DOWNLOADED

    again = fetcher.fetch(obj, cancel=threading.Event())
    assert again.outcome is FetchOutcome.DUPLICATE
    assert source_plan(obj, again) == Target(bucket, "a.csv", None, obj.etag)

    other = announced(bucket, "a.csv", answer, event_time="2026-01-01T00:00:05Z")
    duplicate = fetcher.fetch(other, cancel=threading.Event())
    assert duplicate.outcome is FetchOutcome.DUPLICATE
    assert source_plan(other, duplicate) is Kept.DUPLICATE

    older = announced(bucket, "a.csv", answer, sequencer="09")
    stale = fetcher.fetch(older, cancel=threading.Event())
    assert stale.outcome is FetchOutcome.STALE
    assert source_plan(older, stale) is Kept.STALE


def test_check_says_what_each_bucket_needs_and_deletes_nothing(
    emulator: Emulator, make_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """``s3sqsd check`` with after_download: delete: a source-delete line per bucket/prefix
    (versioned: s3:DeleteObjectVersion; unversioned: If-Match), a skip, never a delete."""
    pipeline = emulator.pipeline(via="direct")
    s3 = emulator.client("s3")
    archive = emulator.unique("bucket")
    s3.create_bucket(Bucket=archive)
    s3.put_bucket_versioning(Bucket=archive, VersioningConfiguration={"Status": "Enabled"})
    put(s3, pipeline.bucket, "in/a.txt", b"a")
    config = make_config(
        pipeline,
        download_folder=None,
        s3_bucket_name=[pipeline.bucket, archive],
        routes=[
            {
                "bucket": pipeline.bucket,
                "prefix": "in/",
                "download_folder": str(tmp_path / "in"),
                "after_download": "delete",
            },
            {"bucket": archive, "download_folder": str(tmp_path / "archive")},  # top level's
            {"download_folder": str(tmp_path / "rest")},  # each allowed bucket not yet named
        ],
        after_download="delete",
    )
    run = run_check(tmp_path, config)
    lines = run.named("source-delete")
    assert [line.verdict for line in lines] == ["skip"] * 3, run.stdout
    inbox, versioned, rest = (line.detail for line in lines)
    assert inbox.startswith(f"s3://{pipeline.bucket}/in/: unversioned: ")
    assert "If-Match" in inbox
    assert versioned.startswith(f"s3://{archive}/: versioned: ")
    assert "s3:DeleteObjectVersion" in versioned
    assert rest.startswith(f"s3://{pipeline.bucket}/: unversioned")  # then the allow-list
    for detail in (inbox, versioned, rest):
        assert detail.endswith("not tested: a check deletes nothing")
    assert exists(s3, pipeline.bucket, "in/a.txt")
