"""provenance.py: the pure rules that read a file's provenance (may an event replace it, may a
removal delete it), and the labels' memory of a filesystem without user xattrs."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.events import ObjectCreated, OtherRecord, is_removal
from s3sqsd.outcomes import FetchOutcome, RemoveOutcome
from s3sqsd.provenance import (
    MAX_RECORD_BYTES,
    XATTR_NAME,
    Origin,
    Provenance,
    ProvenanceLabels,
    Verdict,
    current_verdict,
    newer_verdict,
    removal_verdict,
    skip_verdict,
)

ETAG = "0123456789abcdef0123456789abcdef"
OTHER_ETAG = "fedcba9876543210fedcba9876543210"

ON_DISK = Provenance(
    bucket="b",
    key="k",
    version_id=None,
    etag=ETAG,
    sequencer="0A",
    size=3,
    event_time="2024-05-01T10:00:00.000Z",
)


def created(**changes: Any) -> ObjectCreated:
    """The event the file on disk came from, with ``changes``."""
    base = ObjectCreated(
        bucket="b",
        key="k",
        event_name="ObjectCreated:Put",
        size=3,
        etag=ETAG,
        sequencer="0A",
        event_time="2024-05-01T10:00:00.000Z",
    )
    return dataclasses.replace(base, **changes)


def have(**changes: Any) -> Provenance:
    return dataclasses.replace(ON_DISK, **changes)


class TestSkipVerdict:
    def test_no_provenance_downloads(self) -> None:
        assert skip_verdict(created(), have=None) is None

    @pytest.mark.parametrize("changes", [{"bucket": "other"}, {"key": "k2"}])
    def test_a_file_of_another_object_is_replaced(self, changes: dict[str, str]) -> None:
        assert skip_verdict(created(), have=have(**changes)) is None

    def test_a_newer_sequencer_downloads_even_for_the_same_object(self) -> None:
        assert skip_verdict(created(sequencer="0B"), have=have()) is None

    def test_an_older_sequencer_is_stale_whatever_it_names(self) -> None:
        older = created(sequencer="09FF", etag=OTHER_ETAG)
        assert skip_verdict(older, have=have()) is FetchOutcome.STALE

    def test_sequencers_compare_as_padded_hex(self) -> None:
        """Sequencer 0A00 is 0A padded: the same event, not a newer one."""
        assert skip_verdict(created(sequencer="0A00"), have=have()) is FetchOutcome.DUPLICATE
        assert skip_verdict(created(sequencer="0A01"), have=have()) is None

    def test_the_same_event_again_is_a_duplicate(self) -> None:
        assert skip_verdict(created(), have=have()) is FetchOutcome.DUPLICATE

    def test_a_quoted_event_etag_still_names_the_same_object(self) -> None:
        assert skip_verdict(created(etag=f'"{ETAG}"'), have=have()) is FetchOutcome.DUPLICATE

    def test_an_equal_sequencer_for_another_etag_is_not_a_duplicate(self) -> None:
        """A store that repeats sequencers (LocalStack): equal sequencer, other bytes."""
        later = created(etag=OTHER_ETAG, event_time="2024-05-01T10:00:01.000Z")
        assert skip_verdict(later, have=have()) is None

    def test_an_equal_sequencer_for_another_version_is_not_a_duplicate(self) -> None:
        event = created(version_id="v2")
        assert skip_verdict(event, have=have(version_id="v1")) is None
        assert skip_verdict(event, have=have(version_id="v2")) is FetchOutcome.DUPLICATE

    def test_an_event_without_etag_is_never_a_duplicate(self) -> None:
        assert skip_verdict(created(etag=None), have=have()) is None

    def test_an_equal_sequencer_and_an_earlier_event_time_is_stale(self) -> None:
        earlier = created(etag=OTHER_ETAG, event_time="2024-05-01T09:59:59.000Z")
        assert skip_verdict(earlier, have=have()) is FetchOutcome.STALE

    @pytest.mark.parametrize(
        ("event_time", "file_time"),
        [
            ("2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00.000Z"),  # a tie: replace
            (None, "2024-05-01T10:00:00.000Z"),  # nothing to order by: replace
            ("2024-05-01T09:00:00.000Z", None),
            ("not a time", "2024-05-01T10:00:00.000Z"),
        ],
    )
    def test_an_equal_sequencer_without_an_earlier_time_replaces(
        self, event_time: str | None, file_time: str | None
    ) -> None:
        event = created(etag=OTHER_ETAG, event_time=event_time)
        assert skip_verdict(event, have=have(event_time=file_time)) is None

    @pytest.mark.parametrize(
        ("event_sequencer", "file_sequencer"), [(None, "0A"), ("0A", None), (None, None)]
    )
    def test_without_two_sequencers_the_same_object_is_a_duplicate(
        self, event_sequencer: str | None, file_sequencer: str | None
    ) -> None:
        event = created(sequencer=event_sequencer)
        assert skip_verdict(event, have=have(sequencer=file_sequencer)) is FetchOutcome.DUPLICATE

    def test_without_two_sequencers_another_object_replaces(self) -> None:
        """No order to go by, even an event time: a redelivered old event downloads again."""
        event = created(sequencer=None, etag=OTHER_ETAG, event_time="2020-01-01T00:00:00Z")
        assert skip_verdict(event, have=have()) is None

    def test_without_two_sequencers_the_version_must_match_when_named(self) -> None:
        assert skip_verdict(created(sequencer=None, version_id="v2"), have=have()) is None
        assert (
            skip_verdict(created(sequencer=None), have=have(version_id="v1"))
            is FetchOutcome.DUPLICATE
        )


def removed(**changes: Any) -> OtherRecord:
    base = OtherRecord(bucket="b", key="k", event_name="ObjectRemoved:Delete", sequencer="0B")
    return dataclasses.replace(base, **changes)


def verdict(
    record: OtherRecord, provenance: Provenance | bytes | None = ON_DISK, **facts: Any
) -> RemoveOutcome:
    raw = provenance.encode() if isinstance(provenance, Provenance) else provenance
    return removal_verdict(
        record,
        regular=facts.get("regular", True),
        size=facts.get("size", ON_DISK.size),
        provenance=raw,
    )


class TestRemovalVerdict:
    def test_a_newer_removal_of_our_file_removes_it(self) -> None:
        assert verdict(removed()) is RemoveOutcome.REMOVED

    def test_anything_but_a_regular_file_is_kept(self) -> None:
        assert verdict(removed(), regular=False) is RemoveOutcome.KEPT_NOT_REGULAR

    @pytest.mark.parametrize("raw", [None, b"", b"{}", b"[1]", b"not json"])
    def test_no_readable_provenance_keeps_the_file(self, raw: bytes | None) -> None:
        assert verdict(removed(), raw) is RemoveOutcome.KEPT_NO_PROVENANCE

    def test_a_file_edited_since_its_download_is_kept(self) -> None:
        assert verdict(removed(), size=ON_DISK.size + 1) is RemoveOutcome.KEPT_NO_PROVENANCE

    @pytest.mark.parametrize("changes", [{"bucket": "other"}, {"key": "k2"}])
    def test_a_file_of_another_object_is_kept(self, changes: dict[str, str]) -> None:
        assert verdict(removed(**changes)) is RemoveOutcome.KEPT_NOT_OURS

    def test_deleting_another_version_keeps_the_file(self) -> None:
        record = removed(version_id="v1")
        assert verdict(record, have(version_id="v2")) is RemoveOutcome.KEPT_OTHER_VERSION
        assert verdict(record, have(version_id="v1")) is RemoveOutcome.REMOVED
        assert verdict(record, have(version_id=None)) is RemoveOutcome.REMOVED

    def test_a_delete_marker_removes_whatever_version_the_file_is(self) -> None:
        """A delete marker hides the current object, whichever version the file holds."""
        record = removed(event_name="ObjectRemoved:DeleteMarkerCreated", version_id="marker")
        assert verdict(record, have(version_id="v2")) is RemoveOutcome.REMOVED

    @pytest.mark.parametrize(
        ("record_sequencer", "file_sequencer"), [(None, "0A"), ("0B", None), (None, None)]
    )
    def test_without_two_sequencers_the_file_is_kept(
        self, record_sequencer: str | None, file_sequencer: str | None
    ) -> None:
        record = removed(sequencer=record_sequencer)
        assert verdict(record, have(sequencer=file_sequencer)) is RemoveOutcome.KEPT_NO_SEQUENCER

    @pytest.mark.parametrize("sequencer", ["0A", "0A00", "09"])
    def test_a_removal_not_newer_than_the_file_keeps_it(self, sequencer: str) -> None:
        assert verdict(removed(sequencer=sequencer)) is RemoveOutcome.KEPT_NEWER


class TestIsRemoval:
    @pytest.mark.parametrize(
        "name",
        ["ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated", "Object Deleted"],
    )
    def test_removals(self, name: str) -> None:
        assert is_removal(name)

    @pytest.mark.parametrize(
        "name",
        [
            "LifecycleExpiration:Delete",
            "ObjectCreated:Put",
            "Object Created",
            "ObjectRestore:Completed",
            "objectremoved:delete",
        ],
    )
    def test_not_removals(self, name: str) -> None:
        assert not is_removal(name)


class TestProvenanceLabels:
    """The labels remember a filesystem without user xattrs, and then neither write nor read."""

    @pytest.fixture
    def temp(self, tmp_path: Path) -> Path:
        path = tmp_path / "file"
        path.write_bytes(b"abc")
        return path

    def failing_setxattr(self, monkeypatch: pytest.MonkeyPatch, code: int) -> list[object]:
        calls: list[object] = []

        def setxattr(*args: object, **kwargs: object) -> None:
            calls.append(args)
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "setxattr", setxattr)
        return calls

    def test_unknown_until_told(self) -> None:
        assert ProvenanceLabels().supported is None

    @pytest.mark.parametrize("code", [errno.ENOTSUP, errno.EOPNOTSUPP])
    def test_no_xattr_support_is_remembered(
        self, temp: Path, monkeypatch: pytest.MonkeyPatch, code: int
    ) -> None:
        calls = self.failing_setxattr(monkeypatch, code)
        labels = ProvenanceLabels()
        fd = os.open(temp, os.O_RDWR)
        try:
            labels.write(fd, ON_DISK)  # not an error: the file goes without provenance
            assert labels.supported is False
            labels.write(fd, ON_DISK)
        finally:
            os.close(fd)
        assert len(calls) == 1  # known now: not tried again
        monkeypatch.setattr(os, "getxattr", _never)
        assert labels.read(temp) is None

    def test_a_probe_without_xattr_support_is_remembered(
        self, temp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.failing_setxattr(monkeypatch, errno.ENOTSUP)
        labels = ProvenanceLabels()
        fd = os.open(temp, os.O_RDWR)
        try:
            labels.probe(fd)
        finally:
            os.close(fd)
        assert labels.supported is False

    @pytest.mark.parametrize("code", [errno.E2BIG, errno.ERANGE])
    def test_a_record_too_big_goes_without_and_changes_nothing(
        self, temp: Path, monkeypatch: pytest.MonkeyPatch, code: int
    ) -> None:
        self.failing_setxattr(monkeypatch, code)
        labels = ProvenanceLabels()
        fd = os.open(temp, os.O_RDWR)
        try:
            labels.write(fd, ON_DISK)
        finally:
            os.close(fd)
        assert labels.supported is None

    @pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EACCES])
    def test_other_failures_are_raised(
        self, temp: Path, monkeypatch: pytest.MonkeyPatch, code: int
    ) -> None:
        self.failing_setxattr(monkeypatch, code)
        labels = ProvenanceLabels()
        fd = os.open(temp, os.O_RDWR)
        try:
            with pytest.raises(OSError, match=os.strerror(code)) as raised:
                labels.write(fd, ON_DISK)
            assert raised.value.errno == code
            with pytest.raises(OSError, match=os.strerror(code)):
                labels.probe(fd)
        finally:
            os.close(fd)
        assert labels.supported is None

    def test_written_then_read_back(self, temp: Path) -> None:
        labels = ProvenanceLabels()
        fd = os.open(temp, os.O_RDWR)
        try:
            try:
                labels.write(fd, ON_DISK)
            except OSError as exc:  # pragma: no cover - depends on the test machine
                pytest.skip(f"no user xattrs here ({exc.strerror})")
        finally:
            os.close(fd)
        if labels.supported is False:
            pytest.skip("tmp_path has no user xattrs")
        assert labels.supported is True
        assert os.getxattr(temp, XATTR_NAME) == ON_DISK.encode()
        assert labels.read(temp) == ON_DISK
        temp.write_bytes(b"edited")  # another size: no longer what the label says
        assert labels.read(temp) is None


def _never(*_args: object, **_kwargs: object) -> bytes:
    raise AssertionError("read although the filesystem has no user xattrs")


# ---- S3's metadata in the record, and the rule across processes --------------------------------

LM = 1714557600  # 2024-05-01T10:00:00Z


def record(**changes: Any) -> Provenance:
    """A record of the metadata era: no sequencer (a listing wrote it), LastModified known."""
    return dataclasses.replace(ON_DISK, **{"sequencer": None, "last_modified": LM, **changes})


class TestRecordWithMetadata:
    def test_roundtrip_keeps_the_metadata(self) -> None:
        full = record(content_type="text/csv", metadata=(("a", "1"), ("b", "\u00e9")))
        assert Provenance.decode(full.encode()) == full

    def test_a_record_of_an_earlier_version_still_decodes(self) -> None:
        old = (
            b'{"bucket":"b","etag":"'
            + ETAG.encode()
            + b'","event_time":"2024-05-01T10:00:00.000Z",'
            b'"key":"k","sequencer":"0A","size":3,"version_id":null}'
        )
        decoded = Provenance.decode(old)
        assert decoded == ON_DISK
        assert decoded is not None
        assert (decoded.last_modified, decoded.content_type, decoded.metadata) == (None, None, ())

    def test_and_an_earlier_version_reads_a_new_record(self) -> None:
        """Earlier versions read only the fields they know: the new ones are extra keys."""
        import json

        data = json.loads(record(content_type="x/y", metadata=(("a", "1"),)).encode())
        assert {"bucket", "key", "version_id", "etag", "sequencer", "size"} <= set(data)

    @pytest.mark.parametrize(
        "field",
        ['"last_modified":-1', '"last_modified":"x"', '"metadata":[]', '"metadata":{"a":1}'],
    )
    def test_malformed_new_fields_are_not_trusted(self, field: str) -> None:
        raw = b'{"bucket":"b","key":"k","size":3,' + field.encode() + b"}"
        assert Provenance.decode(raw) is None

    def test_metadata_too_large_for_the_record_is_left_out_not_the_ordering_facts(self) -> None:
        big = record(metadata=tuple((f"name{i}", "\u00e9" * 100) for i in range(20)))
        raw = big.encode()
        assert len(raw) <= MAX_RECORD_BYTES
        decoded = Provenance.decode(raw)
        assert decoded is not None
        assert decoded.metadata == ()
        assert decoded.metadata_dropped
        assert (decoded.last_modified, decoded.etag) == (LM, ETAG)


class TestNewerVerdict:
    def test_two_sequencers_decide_as_before(self) -> None:
        older = created(sequencer="09")
        candidate = have(etag=OTHER_ETAG, sequencer="09", last_modified=LM + 10)
        assert newer_verdict(older, candidate, have=have(last_modified=LM)) is Verdict.STALE
        newer = created(sequencer="0B", etag=OTHER_ETAG)
        assert newer_verdict(newer, candidate, have=have()) is Verdict.REPLACE

    def test_without_two_sequencers_another_object_asks_s3(self) -> None:
        """LastModified cannot order two objects of a key in either direction: a multipart
        object's is when its upload began (an object completed later can look older, and one
        PUT meanwhile can look newer than the current one). S3 decides, events or listings."""
        obj = created(sequencer=None, etag=OTHER_ETAG)
        older = record(etag=OTHER_ETAG, last_modified=LM - 1)
        newer = record(etag=OTHER_ETAG, last_modified=LM + 1)
        for origin in (Origin.EVENT, Origin.LISTING):
            assert newer_verdict(obj, older, have=record(), origin=origin) is Verdict.ASK_S3
            assert newer_verdict(obj, newer, have=record(), origin=origin) is Verdict.ASK_S3
        # A sequencer on one side only does not order either: files a listing wrote have none.
        assert newer_verdict(created(), older, have=record()) is Verdict.ASK_S3

    def test_the_same_object_is_a_duplicate(self) -> None:
        obj = created(sequencer=None)
        assert newer_verdict(obj, record(last_modified=LM + 5), have=record()) is (
            Verdict.DUPLICATE
        )

    def test_an_equal_second_or_an_unknown_time_asks_s3(self) -> None:
        obj = created(sequencer=None, etag=OTHER_ETAG)
        tie = record(etag=OTHER_ETAG)
        assert newer_verdict(obj, tie, have=record()) is Verdict.ASK_S3
        old_record = record(last_modified=None)
        assert newer_verdict(obj, tie, have=old_record) is Verdict.ASK_S3

    @pytest.mark.parametrize("on_disk", [None, record(key="other")])
    def test_a_file_not_ours_an_event_replaces_a_listing_never(
        self, on_disk: Provenance | None
    ) -> None:
        obj = created(sequencer=None)
        candidate = record()
        assert newer_verdict(obj, candidate, have=on_disk) is Verdict.REPLACE
        assert newer_verdict(obj, candidate, have=on_disk, origin=Origin.LISTING) is (
            Verdict.CONFLICT
        )

    def test_s3_current_object_alone_replaces(self) -> None:
        candidate = record(etag=OTHER_ETAG, version_id="v2")
        assert current_verdict(candidate, current_etag=None, current_version_id="v2") is (
            Verdict.REPLACE
        )
        assert current_verdict(candidate, current_etag=None, current_version_id="v3") is (
            Verdict.STALE
        )
        unversioned = record(etag=OTHER_ETAG)
        quoted = f'"{OTHER_ETAG}"'
        assert current_verdict(unversioned, current_etag=quoted, current_version_id=None) is (
            Verdict.REPLACE
        )
        assert current_verdict(unversioned, current_etag=ETAG, current_version_id=None) is (
            Verdict.STALE
        )
        assert current_verdict(unversioned, current_etag=None, current_version_id=None) is (
            Verdict.STALE  # the key is gone: nothing is current, the file stays
        )
