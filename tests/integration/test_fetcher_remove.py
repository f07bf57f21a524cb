"""Fetcher.remove (on_remove: delete) on files downloaded from the emulator: a file goes only
when its provenance names the removed object and the removal is newer; everything else stays."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.errors import LocalError
from s3sqsd.events import ObjectCreated, OtherRecord
from s3sqsd.fetcher import XATTR_NAME, Fetcher, FetchOutcome, Provenance, RemoveOutcome
from tests.support.emulator import Emulator

pytestmark = pytest.mark.integration

SEQUENCER = "00AA"
DATA = b"report body\n"


@pytest.fixture
def fetcher(make_fetcher: Callable[..., Fetcher], xattrs: None) -> Fetcher:
    f = make_fetcher()
    assert f.xattrs_supported
    return f


def download(
    fetcher: Fetcher,
    s3: Any,
    bucket: str,
    key: str,
    *,
    sequencer: str | None = SEQUENCER,
    data: bytes = DATA,
) -> Path:
    response = s3.put_object(Bucket=bucket, Key=key, Body=data)
    obj = ObjectCreated(
        bucket=bucket,
        key=key,
        event_name="ObjectCreated:Put",
        size=len(data),
        etag=str(response["ETag"]).strip('"'),
        version_id=response.get("VersionId"),
        sequencer=sequencer,
    )
    result = fetcher.fetch(obj, cancel=threading.Event())
    assert result.outcome is FetchOutcome.DOWNLOADED
    assert result.path is not None
    return result.path


def removal(
    bucket: str,
    key: str,
    sequencer: str | None = "00AB",
    *,
    event_name: str = "ObjectRemoved:Delete",
    version_id: str | None = None,
) -> OtherRecord:
    return OtherRecord(
        bucket=bucket,
        key=key,
        event_name=event_name,
        sequencer=sequencer,
        version_id=version_id,
    )


def label(path: Path, bucket: str, key: str, sequencer: str | None = SEQUENCER) -> None:
    """Give a hand-made file the provenance the fetcher would have written."""
    provenance = Provenance(
        bucket=bucket,
        key=key,
        version_id=None,
        etag=None,
        sequencer=sequencer,
        size=path.stat().st_size,
    )
    os.setxattr(path, XATTR_NAME, provenance.encode())


class TestTheRule:
    @pytest.mark.parametrize(
        ("sequencer", "expected"),
        [
            ("0099", RemoveOutcome.KEPT_NEWER),  # older than the file
            ("00A9FFFFFF", RemoveOutcome.KEPT_NEWER),
            ("00AA", RemoveOutcome.KEPT_NEWER),  # the file's own event
            ("00aa", RemoveOutcome.KEPT_NEWER),
            ("00AA0000", RemoveOutcome.KEPT_NEWER),  # the same, padded
            ("00AB", RemoveOutcome.REMOVED),
            ("00AA01", RemoveOutcome.REMOVED),
            ("01", RemoveOutcome.REMOVED),
        ],
    )
    def test_sequencer_order(
        self,
        fetcher: Fetcher,
        s3: Any,
        bucket: str,
        sequencer: str,
        expected: RemoveOutcome,
    ) -> None:
        path = download(fetcher, s3, bucket, "reports/q1.pdf")
        assert fetcher.remove(removal(bucket, "reports/q1.pdf", sequencer)) is expected
        if expected is RemoveOutcome.REMOVED:
            assert not path.exists()
            assert path.parent.is_dir()  # directories are left in place
        else:
            assert path.read_bytes() == DATA

    def test_removed_once_then_absent(self, fetcher: Fetcher, s3: Any, bucket: str) -> None:
        path = download(fetcher, s3, bucket, "a.txt")
        assert fetcher.remove(removal(bucket, "a.txt")) is RemoveOutcome.REMOVED
        assert not path.exists()
        assert fetcher.remove(removal(bucket, "a.txt")) is RemoveOutcome.ABSENT

    def test_other_bucket_is_kept(
        self, fetcher: Fetcher, s3: Any, bucket: str, emulator: Emulator
    ) -> None:
        other = emulator.unique("other")
        s3.create_bucket(Bucket=other)
        path = download(fetcher, s3, bucket, "a.txt")
        assert fetcher.remove(removal(other, "a.txt")) is RemoveOutcome.KEPT_NOT_OURS
        assert path.read_bytes() == DATA

    def test_other_key_at_the_same_path_is_kept(
        self, fetcher: Fetcher, s3: Any, bucket: str
    ) -> None:
        """A route's stripped key can put another key's file at this path."""
        path = download(fetcher, s3, bucket, "a.txt")
        record = removal(bucket, "in/a.txt")
        assert fetcher.remove(record, key_path="a.txt") is RemoveOutcome.KEPT_NOT_OURS
        assert path.read_bytes() == DATA

    def test_removal_without_sequencer_is_kept(
        self, fetcher: Fetcher, s3: Any, bucket: str
    ) -> None:
        path = download(fetcher, s3, bucket, "a.txt")
        assert fetcher.remove(removal(bucket, "a.txt", None)) is RemoveOutcome.KEPT_NO_SEQUENCER
        assert path.read_bytes() == DATA

    def test_file_without_sequencer_is_kept(self, fetcher: Fetcher, s3: Any, bucket: str) -> None:
        path = download(fetcher, s3, bucket, "a.txt", sequencer=None)
        assert fetcher.remove(removal(bucket, "a.txt", "FFFF")) is RemoveOutcome.KEPT_NO_SEQUENCER
        assert path.read_bytes() == DATA

    def test_eventbridge_object_deleted_removes(
        self, fetcher: Fetcher, s3: Any, bucket: str
    ) -> None:
        path = download(fetcher, s3, bucket, "a.txt")
        record = removal(bucket, "a.txt", event_name="Object Deleted", version_id="marker")
        assert fetcher.remove(record) is RemoveOutcome.REMOVED
        assert not path.exists()

    @pytest.mark.parametrize(
        "event_name",
        [
            "LifecycleExpiration:Delete",
            "ObjectTagging:Put",
            "ObjectRestore:Completed",
            "Object Created",
        ],
    )
    def test_records_that_are_not_removals_change_nothing(
        self, fetcher: Fetcher, s3: Any, bucket: str, event_name: str
    ) -> None:
        path = download(fetcher, s3, bucket, "a.txt")
        record = removal(bucket, "a.txt", event_name=event_name)
        assert fetcher.remove(record) is RemoveOutcome.NOT_REMOVAL
        assert path.read_bytes() == DATA

    def test_the_directory_is_synced_after_the_unlink(
        self, fetcher: Fetcher, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = download(fetcher, s3, bucket, "deep/dir/a.txt")
        synced: list[tuple[int, int]] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            synced.append((st.st_dev, st.st_ino))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        parent = path.parent.stat()
        assert fetcher.remove(removal(bucket, "deep/dir/a.txt")) is RemoveOutcome.REMOVED
        assert synced == [(parent.st_dev, parent.st_ino)]

    def test_a_failed_sync_is_a_local_error(
        self, fetcher: Fetcher, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        download(fetcher, s3, bucket, "a.txt")

        def fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(LocalError, match=r"cannot sync .* for the removal of s3://"):
            fetcher.remove(removal(bucket, "a.txt"))


class TestVersions:
    @pytest.fixture
    def versioned(self, s3: Any, bucket: str) -> str:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return bucket

    def version_of(self, path: Path) -> str | None:
        provenance = Provenance.decode(os.getxattr(path, XATTR_NAME))
        assert provenance is not None
        return provenance.version_id

    def test_deleting_an_older_version_keeps_the_file(
        self, fetcher: Fetcher, s3: Any, versioned: str
    ) -> None:
        path = download(fetcher, s3, versioned, "a.txt")
        assert self.version_of(path) is not None
        record = removal(versioned, "a.txt", version_id="an-older-version")
        assert fetcher.remove(record) is RemoveOutcome.KEPT_OTHER_VERSION
        assert path.read_bytes() == DATA

    def test_deleting_the_files_version_removes_it(
        self, fetcher: Fetcher, s3: Any, versioned: str
    ) -> None:
        path = download(fetcher, s3, versioned, "a.txt")
        record = removal(versioned, "a.txt", version_id=self.version_of(path))
        assert fetcher.remove(record) is RemoveOutcome.REMOVED
        assert not path.exists()

    def test_a_delete_marker_removes_it(self, fetcher: Fetcher, s3: Any, versioned: str) -> None:
        path = download(fetcher, s3, versioned, "a.txt")
        record = removal(
            versioned,
            "a.txt",
            event_name="ObjectRemoved:DeleteMarkerCreated",
            version_id="the-marker's-own-version",
        )
        assert fetcher.remove(record) is RemoveOutcome.REMOVED
        assert not path.exists()


class TestNotOurs:
    def test_file_without_provenance_is_kept(self, fetcher: Fetcher, root: Path) -> None:
        path = root / "a.txt"
        path.write_bytes(b"written by hand")
        assert fetcher.remove(removal("b", "a.txt", "FFFF")) is RemoveOutcome.KEPT_NO_PROVENANCE
        assert path.read_bytes() == b"written by hand"

    def test_file_edited_since_is_kept(self, fetcher: Fetcher, s3: Any, bucket: str) -> None:
        path = download(fetcher, s3, bucket, "a.txt")
        with path.open("ab") as stream:
            stream.write(b"local notes\n")
        assert fetcher.remove(removal(bucket, "a.txt")) is RemoveOutcome.KEPT_NO_PROVENANCE
        assert path.exists()

    def test_garbage_provenance_is_kept(self, fetcher: Fetcher, root: Path) -> None:
        path = root / "a.txt"
        path.write_bytes(b"x")
        os.setxattr(path, XATTR_NAME, b"not json")
        assert fetcher.remove(removal("b", "a.txt")) is RemoveOutcome.KEPT_NO_PROVENANCE
        assert path.exists()

    def test_symlink_at_the_path_is_kept_and_its_target_untouched(
        self, fetcher: Fetcher, s3: Any, bucket: str, root: Path, tmp_path: Path
    ) -> None:
        # The target even carries a provenance that matches the removal.
        target = tmp_path / "outside.txt"
        target.write_bytes(b"precious")
        label(target, bucket, "link.txt")
        link = root / "link.txt"
        link.symlink_to(target)
        assert fetcher.remove(removal(bucket, "link.txt")) is RemoveOutcome.KEPT_NOT_REGULAR
        assert link.is_symlink()
        assert target.read_bytes() == b"precious"

    def test_symlink_to_a_file_of_ours_inside_the_folder_is_kept(
        self, fetcher: Fetcher, s3: Any, bucket: str, root: Path
    ) -> None:
        real = download(fetcher, s3, bucket, "real.txt")
        link = root / "alias.txt"
        link.symlink_to(real)
        assert fetcher.remove(removal(bucket, "alias.txt")) is RemoveOutcome.KEPT_NOT_REGULAR
        assert link.is_symlink()
        assert real.read_bytes() == DATA

    def test_symlinked_directory_leading_outside_is_not_followed(
        self, fetcher: Fetcher, bucket: str, root: Path, tmp_path: Path
    ) -> None:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        victim = outside / "a.txt"
        victim.write_bytes(b"precious")
        label(victim, bucket, "dir/a.txt")
        (root / "dir").symlink_to(outside)
        assert fetcher.remove(removal(bucket, "dir/a.txt")) is RemoveOutcome.KEPT_NOT_REGULAR
        assert victim.read_bytes() == b"precious"

    def test_directory_at_the_path_is_kept(self, fetcher: Fetcher, root: Path) -> None:
        (root / "d").mkdir()
        (root / "d" / "inner").write_bytes(b"x")
        assert fetcher.remove(removal("b", "d")) is RemoveOutcome.KEPT_NOT_REGULAR
        assert (root / "d" / "inner").exists()

    def test_fifo_at_the_path_is_kept_without_blocking(self, fetcher: Fetcher, root: Path) -> None:
        fifo = root / "pipe"
        os.mkfifo(fifo)
        assert fetcher.remove(removal("b", "pipe")) is RemoveOutcome.KEPT_NOT_REGULAR
        assert fifo.exists()


class TestPaths:
    def test_nothing_there(self, fetcher: Fetcher) -> None:
        assert fetcher.remove(removal("b", "never/downloaded.txt")) is RemoveOutcome.ABSENT

    def test_a_file_where_the_parent_directory_would_be(self, fetcher: Fetcher, root: Path) -> None:
        (root / "a").write_bytes(b"x")
        assert fetcher.remove(removal("b", "a/b.txt")) is RemoveOutcome.ABSENT
        assert (root / "a").read_bytes() == b"x"

    def test_folder_marker(self, fetcher: Fetcher, root: Path) -> None:
        (root / "dir").mkdir()
        assert fetcher.remove(removal("b", "dir/")) is RemoveOutcome.FOLDER_MARKER
        assert (root / "dir").is_dir()

    @pytest.mark.parametrize("key", ["../outside.txt", "/etc/passwd", "a//b", ".s3sqsd-tmp/x"])
    def test_unsafe_keys_touch_nothing(self, fetcher: Fetcher, key: str) -> None:
        assert fetcher.remove(removal("b", key)) is RemoveOutcome.UNSAFE_KEY

    def test_the_temp_folder_is_out_of_reach(self, fetcher: Fetcher, root: Path) -> None:
        temp = root / ".s3sqsd-tmp"
        assert temp.is_dir()
        assert fetcher.remove(removal("b", ".s3sqsd-tmp")) is RemoveOutcome.UNSAFE_KEY
        assert temp.is_dir()

    def test_stripped_key_path(self, fetcher: Fetcher, root: Path) -> None:
        """A route with strip_prefix stores reports/a.txt as a.txt: key_path says where."""
        path = root / "a.txt"
        path.write_bytes(b"x")
        label(path, "b", "reports/a.txt")
        record = removal("b", "reports/a.txt")
        assert fetcher.remove(record) is RemoveOutcome.ABSENT
        assert path.exists()
        assert fetcher.remove(record, key_path="a.txt") is RemoveOutcome.REMOVED
        assert not path.exists()
