"""Fetcher against the emulator over real HTTP: bytes, modes, atomicity, ordering, failures."""

from __future__ import annotations

import errno
import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.dirsync import DirectorySync
from s3sqsd.errors import (
    DownloadCancelledError,
    FetchError,
    IntegrityError,
    LocalError,
    PathConflictError,
    UnsafeKeyError,
)
from s3sqsd.fetcher import XATTR_NAME, Fetcher, FetchOutcome
from s3sqsd.paths import PATH_LOCK_NAME, TEMP_DIR_NAME
from tests.support.emulator import REGION, TEST_ENV, Emulator
from tests.support.fetching import created as event
from tests.support.fetching import put

pytestmark = pytest.mark.integration

FILE_MODE = 0o604
DIR_MODE = 0o751
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


def temp_files(root: Path) -> list[Path]:
    """The temp folder's entries but the per-path lock file (there for good)."""
    return sorted(p for p in (root / TEMP_DIR_NAME).iterdir() if p.name != PATH_LOCK_NAME)


def go() -> threading.Event:
    return threading.Event()


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would strip the configured modes: they must be set regardless. Listed
    before ``fetcher``, so it is in force when the folder is prepared, as systemd's ``UMask=``
    is when the daemon starts (``prepare`` probes what the umask does to ``file_mode``)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def fetcher(make_fetcher: Callable[..., Fetcher]) -> Fetcher:
    return make_fetcher(file_mode=FILE_MODE, directory_mode=DIR_MODE)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[Path, str], None]]:
    """Mount a tmpfs (as root); skip the test where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(target: Path, options: str) -> None:
        target.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


def etag_of(response: dict[str, Any]) -> str:
    return str(response["ETag"]).strip('"')


class TestDownload:
    def test_bytes_mode_and_result(
        self, s3: Any, bucket: str, root: Path, strict_umask: None, fetcher: Fetcher
    ) -> None:
        """The file holds the object's bytes, has file_mode despite the umask, no temp left."""
        data = os.urandom(300_000)
        etag = etag_of(put(s3, bucket, "report.bin", data))
        result = fetcher.fetch(event(bucket, "report.bin", size=len(data), etag=etag), cancel=go())
        target = root / "report.bin"
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert result.path == target
        assert (result.size, result.etag) == (len(data), etag)
        assert result.duration_ms >= 0
        assert target.read_bytes() == data
        assert target.stat().st_mode & 0o7777 == FILE_MODE
        assert temp_files(root) == []

    def test_multichunk_with_sha256_checksum(self, s3: Any, bucket: str, root: Path) -> None:
        """Several chunks, an object stored with a SHA256 checksum: verified and intact."""
        data = os.urandom(200_000)
        put(s3, bucket, "c.bin", data, ChecksumAlgorithm="SHA256")
        fetcher = Fetcher(s3=s3, root=root, chunk_size=7_000)
        fetcher.prepare()
        result = fetcher.fetch(event(bucket, "c.bin"), cancel=go())
        assert (root / "c.bin").read_bytes() == data
        assert result.size == len(data)

    def test_nested_key_creates_parents_with_directory_mode(
        self, s3: Any, bucket: str, root: Path, strict_umask: None, fetcher: Fetcher
    ) -> None:
        """Missing parents get directory_mode; an existing directory keeps its own mode."""
        (root / "a").mkdir(mode=0o700)
        put(s3, bucket, "a/b/c/d.txt", b"deep")
        result = fetcher.fetch(event(bucket, "a/b/c/d.txt"), cancel=go())
        assert result.path == root / "a" / "b" / "c" / "d.txt"
        assert result.path.read_bytes() == b"deep"
        assert (root / "a").stat().st_mode & 0o7777 == 0o700
        for directory in (root / "a" / "b", root / "a" / "b" / "c"):
            assert directory.stat().st_mode & 0o7777 == DIR_MODE
        assert temp_files(root) == []

    def test_zero_byte_object(self, s3: Any, bucket: str, root: Path, fetcher: Fetcher) -> None:
        """An empty object becomes an empty file (not skipped)."""
        etag = etag_of(put(s3, bucket, "empty", b""))
        result = fetcher.fetch(event(bucket, "empty", size=0, etag=etag), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert (root / "empty").read_bytes() == b""
        assert result.size == 0

    def test_multipart_object(self, s3: Any, bucket: str, root: Path, fetcher: Fetcher) -> None:
        """A multipart ETag (-N) is not an MD5: skipped, and the bytes are still right."""
        parts = [os.urandom(5 * MiB), os.urandom(123_457)]
        upload = s3.create_multipart_upload(Bucket=bucket, Key="big/multi.bin")
        done = []
        for number, part in enumerate(parts, start=1):
            response = s3.upload_part(
                Bucket=bucket,
                Key="big/multi.bin",
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=part,
            )
            done.append({"ETag": response["ETag"], "PartNumber": number})
        complete = s3.complete_multipart_upload(
            Bucket=bucket,
            Key="big/multi.bin",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": done},
        )
        etag = etag_of(complete)
        assert etag.endswith("-2")
        total = sum(map(len, parts))
        result = fetcher.fetch(event(bucket, "big/multi.bin", size=total, etag=etag), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert result.etag == etag
        assert (root / "big" / "multi.bin").read_bytes() == b"".join(parts)

    def test_versioned_fetch_pins_the_version(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher
    ) -> None:
        """With a version id, the GET returns that version even after a newer one is put."""
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        v1 = put(s3, bucket, "doc", b"version one")
        put(s3, bucket, "doc", b"version two, longer")
        result = fetcher.fetch(
            event(bucket, "doc", version_id=v1["VersionId"], etag=etag_of(v1), size=11),
            cancel=go(),
        )
        assert (root / "doc").read_bytes() == b"version one"
        assert result.version_id == v1["VersionId"]

    def test_folder_marker_writes_nothing(self, bucket: str, root: Path, fetcher: Fetcher) -> None:
        """A key ending in '/' is a folder marker: no GET (the object does not exist), no file."""
        result = fetcher.fetch(event(bucket, "photos/2024/"), cancel=go())
        assert result.outcome is FetchOutcome.FOLDER_MARKER
        assert result.path is None
        assert sorted(p.name for p in root.iterdir()) == [TEMP_DIR_NAME]

    def test_concurrent_fetches_of_one_event(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """Six threads, one event: one download, five duplicates, no temp, no lock kept."""
        data = os.urandom(100_000)
        etag = etag_of(put(s3, bucket, "same", data))
        obj = event(bucket, "same", etag=etag, size=len(data), sequencer="00AB")
        barrier = threading.Barrier(6)
        outcomes: list[FetchOutcome] = []
        errors: list[BaseException] = []

        def run() -> None:
            barrier.wait()
            try:
                outcomes.append(fetcher.fetch(obj, cancel=go()).outcome)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert outcomes.count(FetchOutcome.DOWNLOADED) == 1
        assert outcomes.count(FetchOutcome.DUPLICATE) == 5
        assert (root / "same").read_bytes() == data
        assert temp_files(root) == []
        assert fetcher._locks == {}


class TestSystemCallsPerFile:
    """Each download costs as few system calls as its guarantees allow: on a busy host every
    one is also a hand-off of the GIL between the download threads (docs/performance.md)."""

    def test_a_path_found_empty_and_untouched_is_not_read_again(
        self,
        s3: Any,
        bucket: str,
        root: Path,
        fetcher: Fetcher,
        xattrs: None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Nothing at the path at the first look and no other thread changed it since: the
        look under the lock before the rename is skipped (test_recheck_under_lock_before_rename
        covers a path changed meanwhile); a file found there is looked at again."""
        reads: list[str] = []
        real_getxattr = os.getxattr

        def recording_getxattr(path: Any, attribute: str, **kwargs: Any) -> bytes:
            if not isinstance(path, int):
                reads.append(Path(path).name)
            return real_getxattr(path, attribute, **kwargs)

        monkeypatch.setattr(os, "getxattr", recording_getxattr)
        put(s3, bucket, "fresh", b"first bytes")
        fetcher.fetch(event(bucket, "fresh", sequencer="01"), cancel=go())
        assert reads == []
        put(s3, bucket, "fresh", b"second bytes")
        result = fetcher.fetch(event(bucket, "fresh", sequencer="02"), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert (root / "fresh").read_bytes() == b"second bytes"
        assert reads == ["fresh", "fresh"]  # before the GET, and under the lock

    def test_no_fchmod_when_the_umask_keeps_file_mode(
        self, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A umask that strips none of file_mode's bits: files are created with it, no fchmod
        each; one that strips some: an fchmod each, and the mode is exact either way."""
        fchmods: list[int] = []
        real_fchmod = os.fchmod

        def counting_fchmod(fd: int, mode: int) -> None:
            fchmods.append(mode)
            real_fchmod(fd, mode)

        counts = {}
        for umask in (0o022, 0o077):  # 0o022 keeps 0o604; 0o077 strips its "other" bit
            old = os.umask(umask)
            try:
                root = tmp_path / f"umask-{umask:03o}"
                fetcher = Fetcher(s3=s3, root=root, file_mode=FILE_MODE, directory_mode=DIR_MODE)
                fetcher.prepare()
                fchmods.clear()
                with monkeypatch.context() as patch:
                    patch.setattr(os, "fchmod", counting_fchmod)
                    for name in ("one", "two"):
                        put(s3, bucket, name, name.encode())
                        fetcher.fetch(event(bucket, name), cancel=go())
                counts[umask] = list(fchmods)
            finally:
                os.umask(old)
            for name in ("one", "two"):
                assert (root / name).stat().st_mode & 0o7777 == FILE_MODE
        assert counts == {0o022: [], 0o077: [FILE_MODE, FILE_MODE]}

    def test_temp_names_count_and_pass_over_a_taken_name(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Temp names are the fetcher's prefix and a counter, no random bytes per file; a name
        that exists anyway is passed over, the file there left alone."""
        created: list[str] = []
        real_open = os.open

        def recording_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
            if flags & os.O_EXCL and str(path).endswith(".part"):
                created.append(Path(path).name)
            return real_open(path, flags, mode, **kwargs)

        monkeypatch.setattr(os, "open", recording_open)
        put(s3, bucket, "first", b"1")
        fetcher.fetch(event(bucket, "first"), cancel=go())
        prefix, number = created[0].removesuffix(".part").rsplit("-", 1)
        taken = root / TEMP_DIR_NAME / f"{prefix}-{int(number) + 1}.part"
        taken.write_bytes(b"not this download's")
        put(s3, bucket, "second", b"2")
        result = fetcher.fetch(event(bucket, "second"), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert (root / "second").read_bytes() == b"2"
        assert created == [f"{prefix}-{int(number) + k}.part" for k in range(3)]
        assert taken.read_bytes() == b"not this download's"


class TestFailures:
    def test_missing_object_is_transient(self, bucket: str, root: Path, fetcher: Fetcher) -> None:
        """404 right after a notification: FetchError naming the object, nothing written."""
        with pytest.raises(FetchError, match=f"s3://{bucket}/nope/gone.txt.*NoSuchKey"):
            fetcher.fetch(event(bucket, "nope/gone.txt"), cancel=go())
        assert not (root / "nope").exists()
        assert temp_files(root) == []

    def test_event_size_mismatch_is_integrity_error(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher
    ) -> None:
        """Same ETag as the event but another size: IntegrityError, nothing at the final path."""
        etag = etag_of(put(s3, bucket, "sized", b"hello"))
        with pytest.raises(IntegrityError, match=r"s3://.*/sized.*expected 99.*got 5"):
            fetcher.fetch(event(bucket, "sized", etag=etag, size=99), cancel=go())
        assert not (root / "sized").exists()
        assert temp_files(root) == []

    def test_other_etag_means_newer_object(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher
    ) -> None:
        """The event's size is only checked for the event's own object (same ETag)."""
        put(s3, bucket, "moved", b"overwritten since")
        fetcher.fetch(event(bucket, "moved", etag="0" * 32, size=3), cancel=go())
        assert (root / "moved").read_bytes() == b"overwritten since"

    def test_cancel_before_get(self, s3: Any, bucket: str, root: Path, fetcher: Fetcher) -> None:
        """A cancel already set: FetchError, nothing written."""
        put(s3, bucket, "c", b"data")
        cancel = go()
        cancel.set()
        with pytest.raises(DownloadCancelledError, match="cancelled"):
            fetcher.fetch(event(bucket, "c"), cancel=cancel)
        assert not (root / "c").exists()
        assert temp_files(root) == []

    def test_cancel_during_download(self, s3: Any, bucket: str, root: Path) -> None:
        """A cancel set between chunks: FetchError, and the temp file that existed is gone."""
        put(s3, bucket, "slow", os.urandom(MiB))
        fetcher = Fetcher(s3=s3, root=root, chunk_size=64 * 1024)
        fetcher.prepare()
        seen: list[list[Path]] = []

        class CancelMidway(threading.Event):
            def is_set(self) -> bool:
                temps = temp_files(root)
                if not seen and temps and temps[0].stat().st_size > 0:
                    seen.append(temps)  # at least one chunk is on disk: cancel now
                    self.set()
                return super().is_set()

        with pytest.raises(DownloadCancelledError, match=r"s3://.*/slow.*cancelled"):
            fetcher.fetch(event(bucket, "slow"), cancel=CancelMidway())
        assert len(seen) == 1
        assert len(seen[0]) == 1
        assert not seen[0][0].exists()
        assert not (root / "slow").exists()
        assert temp_files(root) == []

    def test_symlink_escape_writes_nothing_outside(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, tmp_path: Path
    ) -> None:
        """root/link -> outside: keys under link/ are refused before anything is written."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (root / "link").symlink_to(outside)
        put(s3, bucket, "link/x", b"escape")
        put(s3, bucket, "link/sub/x", b"escape")
        for key in ("link/x", "link/sub/x"):
            with pytest.raises(UnsafeKeyError, match=f"s3://{bucket}/{key}"):
                fetcher.fetch(event(bucket, key), cancel=go())
        assert list(outside.iterdir()) == []
        assert temp_files(root) == []

    def test_symlink_inside_root_is_followed(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher
    ) -> None:
        """A symlink that stays inside the root is an ordinary directory."""
        (root / "real").mkdir()
        (root / "alias").symlink_to(root / "real")
        put(s3, bucket, "alias/x", b"ok")
        fetcher.fetch(event(bucket, "alias/x"), cancel=go())
        assert (root / "real" / "x").read_bytes() == b"ok"

    def test_file_where_directory_is_needed(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher
    ) -> None:
        """Key 'a' then 'a/b': PathConflictError, 'a' untouched."""
        put(s3, bucket, "a", b"file a")
        put(s3, bucket, "a/b", b"file a/b")
        fetcher.fetch(event(bucket, "a"), cancel=go())
        with pytest.raises(PathConflictError, match=f"s3://{bucket}/a/b"):
            fetcher.fetch(event(bucket, "a/b"), cancel=go())
        assert (root / "a").read_bytes() == b"file a"
        assert temp_files(root) == []

    def test_directory_at_final_path(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher
    ) -> None:
        """Key 'd/x' then 'd': PathConflictError, the directory and its file untouched."""
        put(s3, bucket, "d/x", b"inner")
        put(s3, bucket, "d", b"outer")
        fetcher.fetch(event(bucket, "d/x"), cancel=go())
        with pytest.raises(PathConflictError, match=f"s3://{bucket}/d\\b"):
            fetcher.fetch(event(bucket, "d"), cancel=go())
        assert (root / "d" / "x").read_bytes() == b"inner"
        assert temp_files(root) == []

    def test_every_rename_is_made_durable_by_a_directory_sync(
        self, s3: Any, bucket: str, root: Path
    ) -> None:
        """The rename into place goes through the directory sync of the right directory, and
        a failing one is a LocalError that leaves the file in place for the next attempt."""
        synced: list[str] = []
        fail = threading.Event()

        def fsync(directory: str) -> None:
            synced.append(directory)
            if fail.is_set():
                raise OSError(errno.EIO, "Input/output error")

        fetcher = Fetcher(s3=s3, root=root, directory_sync=DirectorySync(fsync=fsync))
        fetcher.prepare()
        put(s3, bucket, "top.txt", b"1")
        put(s3, bucket, "sub/dir/deep.txt", b"2")
        fetcher.fetch(event(bucket, "top.txt"), cancel=go())
        fetcher.fetch(event(bucket, "sub/dir/deep.txt"), cancel=go())
        assert synced == [str(root), str(root / "sub" / "dir")]
        fail.set()
        again = event(
            bucket, "again.txt", sequencer="0A1B", etag=etag_of(put(s3, bucket, "again.txt", b"3"))
        )
        with pytest.raises(LocalError) as caught:
            fetcher.fetch(again, cancel=go())
        assert "cannot sync directory" in str(caught.value)
        assert (root / "again.txt").read_bytes() == b"3"  # renamed; the retry finds it there
        assert temp_files(root) == []
        # The retry finds the file in place (a duplicate) and still syncs its directory before
        # it lets the message go: the failed sync may have left the rename not durable.
        fail.clear()
        synced.clear()
        retry = fetcher.fetch(again, cancel=go())
        assert retry.outcome is FetchOutcome.DUPLICATE
        assert synced == [str(root)]

    def test_disk_full_is_local_error(
        self,
        s3: Any,
        bucket: str,
        tmp_path: Path,
        mount_tmpfs: Callable[[Path, str], None],
    ) -> None:
        """ENOSPC: LocalError naming the path and the URL; temp removed, nothing in place."""
        small = tmp_path / "small"
        mount_tmpfs(small, "size=1m")
        root = small / "downloads"
        fetcher = Fetcher(s3=s3, root=root)
        fetcher.prepare()
        put(s3, bucket, "huge.bin", os.urandom(2 * MiB))
        with pytest.raises(LocalError) as caught:
            fetcher.fetch(event(bucket, "huge.bin"), cancel=go())
        text = str(caught.value)
        assert f"s3://{bucket}/huge.bin" in text
        assert str(root / "huge.bin") in text
        assert "No space left" in text
        assert not (root / "huge.bin").exists()
        assert temp_files(root) == []


class TestProvenance:
    def test_xattr_records_the_download(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """user.s3sqsd holds compact JSON of what the file was made from, with S3's
        metadata of it (LastModified, content type, x-amz-meta-*)."""
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        response = put(
            s3, bucket, "p", b"prov", ContentType="text/plain", Metadata={"Owner-Id": "42"}
        )
        head = s3.head_object(Bucket=bucket, Key="p")
        obj = event(
            bucket,
            "p",
            size=4,
            etag=etag_of(response),
            version_id=response["VersionId"],
            sequencer="0055",
        )
        fetcher.fetch(obj, cancel=go())
        raw = os.getxattr(root / "p", XATTR_NAME)
        assert b" " not in raw
        assert json.loads(raw) == {
            "bucket": bucket,
            "key": "p",
            "version_id": response["VersionId"],
            "etag": etag_of(response),
            "sequencer": "0055",
            "size": 4,
            "last_modified": int(head["LastModified"].timestamp()),
            "content_type": "text/plain",
            "metadata": {"owner-id": "42"},
        }
        assert fetcher.xattrs_supported is True

    def test_sequencer_ordering(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """Same sequencer and ETag: DUPLICATE; older: STALE, both without a GET; newer:
        replaced."""
        first = etag_of(put(s3, bucket, "k", b"first"))
        assert fetcher.fetch(
            event(bucket, "k", sequencer="0A", etag=first), cancel=go()
        ).outcome is (FetchOutcome.DOWNLOADED)
        s3.delete_object(Bucket=bucket, Key="k")  # any GET from now on would fail
        duplicate = fetcher.fetch(event(bucket, "k", sequencer="0A00", etag=first), cancel=go())
        assert duplicate.outcome is FetchOutcome.DUPLICATE
        assert (duplicate.path, duplicate.size) == (root / "k", 5)
        stale = fetcher.fetch(event(bucket, "k", sequencer="09FF"), cancel=go())
        assert stale.outcome is FetchOutcome.STALE
        assert (root / "k").read_bytes() == b"first"
        put(s3, bucket, "k", b"second")
        newer = fetcher.fetch(event(bucket, "k", sequencer="0B"), cancel=go())
        assert newer.outcome is FetchOutcome.DOWNLOADED
        assert (root / "k").read_bytes() == b"second"
        assert json.loads(os.getxattr(root / "k", XATTR_NAME))["sequencer"] == "0B"

    def test_equal_sequencer_of_another_object_is_a_new_event(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """LocalStack gives every event one sequencer, and S3-compatible stores may repeat
        them: an equal sequencer with another ETag (or version), or with none to compare, is
        a new event, downloaded; only the same object again is a DUPLICATE."""
        first = etag_of(put(s3, bucket, "k", b"first"))
        fetcher.fetch(event(bucket, "k", sequencer="0A", etag=first), cancel=go())
        second = etag_of(put(s3, bucket, "k", b"second, longer"))
        result = fetcher.fetch(event(bucket, "k", sequencer="0A", etag=second), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert (root / "k").read_bytes() == b"second, longer"
        same = fetcher.fetch(event(bucket, "k", sequencer="0A", etag=second), cancel=go())
        assert same.outcome is FetchOutcome.DUPLICATE
        other_version = event(bucket, "k", sequencer="0A", etag=second, version_id="v2")
        with pytest.raises(FetchError, match="NoSuchVersion"):  # not a duplicate: it GETs
            fetcher.fetch(other_version, cancel=go())
        no_etag = fetcher.fetch(event(bucket, "k", sequencer="0A"), cancel=go())
        assert no_etag.outcome is FetchOutcome.DOWNLOADED

    def test_equal_sequencers_are_ordered_by_event_time(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """Where every event has one sequencer (LocalStack), an event older than the file's
        (event time) is STALE, without a GET, and a newer one replaces it."""
        late = etag_of(put(s3, bucket, "t", b"written second"))
        newer = event(bucket, "t", sequencer="0A", etag=late, event_time="2026-12-06T10:00:01.500Z")
        assert fetcher.fetch(newer, cancel=go()).outcome is FetchOutcome.DOWNLOADED
        older = event(bucket, "t", sequencer="0A", etag="0" * 32, event_time="2026-12-06T10:00:01Z")
        assert fetcher.fetch(older, cancel=go()).outcome is FetchOutcome.STALE
        assert (root / "t").read_bytes() == b"written second"
        third = etag_of(put(s3, bucket, "t", b"third"))
        latest = event(bucket, "t", sequencer="0A", etag=third, event_time="2026-12-06T10:00:02Z")
        assert fetcher.fetch(latest, cancel=go()).outcome is FetchOutcome.DOWNLOADED
        assert (root / "t").read_bytes() == b"third"

    def test_version_duplicate_without_sequencer(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """No sequencer: same version id and ETag as the file is a DUPLICATE (no GET)."""
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        response = put(s3, bucket, "v", b"pinned")
        obj = event(bucket, "v", version_id=response["VersionId"], etag=etag_of(response))
        assert fetcher.fetch(obj, cancel=go()).outcome is FetchOutcome.DOWNLOADED
        s3.delete_object(Bucket=bucket, Key="v", VersionId=response["VersionId"])
        assert fetcher.fetch(obj, cancel=go()).outcome is FetchOutcome.DUPLICATE
        with pytest.raises(FetchError):  # another ETag: not proven the same, so it GETs
            fetcher.fetch(
                event(bucket, "v", version_id=response["VersionId"], etag="1" * 32), cancel=go()
            )

    def test_same_etag_without_sequencer_is_a_duplicate(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """No sequencer (moto's events, or a store without them): an event naming the ETag of
        the file on disk is a DUPLICATE, without a GET; another ETag downloads."""
        first = etag_of(put(s3, bucket, "same", b"one"))
        assert fetcher.fetch(event(bucket, "same", etag=first), cancel=go()).outcome is (
            FetchOutcome.DOWNLOADED
        )
        s3.delete_object(Bucket=bucket, Key="same")  # any GET from now on would fail
        assert fetcher.fetch(event(bucket, "same", etag=first), cancel=go()).outcome is (
            FetchOutcome.DUPLICATE
        )
        with pytest.raises(FetchError):  # another ETag: a new object, so it GETs
            fetcher.fetch(event(bucket, "same", etag="1" * 32), cancel=go())

    def test_no_ordering_information_downloads_again(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """Without sequencer or version id, every event downloads and replaces."""
        put(s3, bucket, "plain", b"one")
        fetcher.fetch(event(bucket, "plain", sequencer="FF"), cancel=go())
        put(s3, bucket, "plain", b"two")
        assert fetcher.fetch(event(bucket, "plain"), cancel=go()).outcome is (
            FetchOutcome.DOWNLOADED
        )
        assert (root / "plain").read_bytes() == b"two"

    def test_edited_file_is_not_trusted(
        self, s3: Any, bucket: str, root: Path, fetcher: Fetcher, xattrs: None
    ) -> None:
        """A file whose size no longer matches its provenance is downloaded again."""
        put(s3, bucket, "e", b"original")
        fetcher.fetch(event(bucket, "e", sequencer="10"), cancel=go())
        with (root / "e").open("ab") as handle:
            handle.write(b" plus an edit")
        result = fetcher.fetch(event(bucket, "e", sequencer="10"), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert (root / "e").read_bytes() == b"original"

    def test_other_bucket_same_key_is_not_a_duplicate(
        self, emulator: Emulator, s3: Any, bucket: str, root: Path, xattrs: None
    ) -> None:
        """Provenance only counts for the same bucket and key."""
        other = emulator.unique("fetch")
        s3.create_bucket(Bucket=other)
        put(s3, bucket, "k", b"from the first")
        put(s3, other, "k", b"from the second")
        fetcher = Fetcher(s3=s3, root=root)
        fetcher.prepare()
        # A layout without the bucket in the path: only the provenance tells them apart.
        fetcher.fetch(event(bucket, "k", sequencer="05"), cancel=go())
        result = fetcher.fetch(event(other, "k", sequencer="01"), cancel=go())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert (root / "k").read_bytes() == b"from the second"

    @pytest.mark.parametrize(
        ("late_sequencer", "expected"),
        [("0B", FetchOutcome.STALE), ("0A", FetchOutcome.DUPLICATE)],
    )
    def test_recheck_under_lock_before_rename(
        self,
        s3: Any,
        bucket: str,
        root: Path,
        xattrs: None,
        late_sequencer: str,
        expected: FetchOutcome,
    ) -> None:
        """A newer event (or the same one delivered twice) landing while an old one streams
        wins the rename."""
        old = b"old bytes " * 20_000
        etag = etag_of(put(s3, bucket, "race", old))
        fetcher = Fetcher(s3=s3, root=root, chunk_size=16 * 1024)
        fetcher.prepare()
        landed: list[FetchOutcome] = []
        newer = expected is FetchOutcome.STALE

        class LandMidway(threading.Event):
            def is_set(self) -> bool:
                if not landed and temp_files(root):
                    tag = etag_of(put(s3, bucket, "race", b"new bytes")) if newer else etag
                    winner = event(bucket, "race", sequencer=late_sequencer, etag=tag)
                    landed.append(fetcher.fetch(winner, cancel=go()).outcome)
                return super().is_set()

        first = event(bucket, "race", sequencer="0A", etag=etag)
        result = fetcher.fetch(first, cancel=LandMidway())
        assert landed == [FetchOutcome.DOWNLOADED]
        assert result.outcome is expected
        assert (root / "race").read_bytes() == (b"new bytes" if newer else old)
        assert temp_files(root) == []


class TestPrepare:
    def test_creates_folders_and_sweeps_leftovers(
        self, s3: Any, tmp_path: Path, strict_umask: None, xattrs: None
    ) -> None:
        """Root and temp folder get directory_mode; leftovers from a crash are removed."""
        root = tmp_path / "srv" / "downloads"
        fetcher = Fetcher(s3=s3, root=root, directory_mode=DIR_MODE)
        assert fetcher.xattrs_supported is None
        assert fetcher.prepare() == 0
        for directory in (tmp_path / "srv", root, root / TEMP_DIR_NAME):
            assert directory.stat().st_mode & 0o7777 == DIR_MODE
        (root / TEMP_DIR_NAME / "0123abcd.part").write_bytes(b"half a file")
        (root / TEMP_DIR_NAME / "stray-dir").mkdir()
        (root / "kept.txt").write_bytes(b"a finished download")
        assert fetcher.prepare() == 2
        assert temp_files(root) == []
        assert (root / "kept.txt").read_bytes() == b"a finished download"
        assert fetcher.xattrs_supported is True

    def test_a_second_fetcher_on_the_same_folder_is_refused(self, s3: Any, tmp_path: Path) -> None:
        """Two processes (here: two Fetchers, each its own open file) on one folder would sweep
        each other's temp files: the second is refused until the first lets go."""
        root = tmp_path / "downloads"
        first = Fetcher(s3=s3, root=root)
        first.prepare()
        (root / TEMP_DIR_NAME / "in-progress.part").write_bytes(b"the first one's download")
        second = Fetcher(s3=s3, root=root)
        with pytest.raises(LocalError) as caught:
            second.prepare()
        assert str(caught.value) == (
            f"download_folder {root} is in use by another s3sqsd process (it holds a lock on "
            f"{root / TEMP_DIR_NAME}); each daemon needs a folder of its own"
        )
        assert temp_files(root) == [root / TEMP_DIR_NAME / "in-progress.part"]  # not swept
        assert first.prepare() == 1  # the holder may prepare again (and sweep its own)
        del first
        gc.collect()
        assert second.prepare() == 0

    def test_read_only_existing_folder(
        self, s3: Any, tmp_path: Path, mount_tmpfs: Callable[[Path, str], None]
    ) -> None:
        """An existing download_folder on a read-only mount: one sentence naming the fix."""
        mount = tmp_path / "ro"
        mount_tmpfs(mount, "size=1m")
        (mount / "downloads" / TEMP_DIR_NAME).mkdir(parents=True)
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True, check=False
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        fetcher = Fetcher(s3=s3, root=mount / "downloads")
        with pytest.raises(LocalError) as caught:
            fetcher.prepare()
        assert str(caught.value) == (
            f"download_folder {mount / 'downloads'} is not writable (Read-only file system); "
            "under systemd add it with ReadWritePaths= in a drop-in (systemctl edit s3sqsd)"
        )

    def test_read_only_missing_folder(
        self, s3: Any, tmp_path: Path, mount_tmpfs: Callable[[Path, str], None]
    ) -> None:
        """A download_folder that cannot even be created says the same."""
        mount = tmp_path / "ro"
        mount_tmpfs(mount, "ro,size=1m")
        with pytest.raises(LocalError, match=r"is not writable \(Read-only file system\)"):
            Fetcher(s3=s3, root=mount / "a" / "downloads").prepare()


# Peak RSS is read from VmHWM, not resource.getrusage().ru_maxrss: Linux carries ru_maxrss over
# exec from the forking parent, so the child would start at the test process's own peak (moto
# holding the objects in memory) and no growth could ever show. VmHWM belongs to the new
# address space only.
MEMORY_SCRIPT = """
import sys, threading
from pathlib import Path
import boto3
from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher

def peak_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status")

endpoint, region, bucket, warm, key, root, chunk_size = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
fetcher = Fetcher(s3=s3, root=Path(root), chunk_size=int(chunk_size))
fetcher.prepare()
fetcher.fetch(ObjectCreated(bucket, warm, "ObjectCreated:Put"), cancel=threading.Event())
before = peak_kib()
result = fetcher.fetch(ObjectCreated(bucket, key, "ObjectCreated:Put"), cancel=threading.Event())
after = peak_kib()
print(result.size, before, after)
"""


def _peak_growth_mib(emulator: Emulator, bucket: str, root: Path, chunk_size: int) -> float:
    """Download ``large`` in a fresh interpreter; peak RSS growth over a warmed-up baseline."""
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(REPO)}
    argv = [emulator.endpoint, REGION, bucket, "warm", "large", str(root), str(chunk_size)]
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written, before_kib, after_kib = map(int, done.stdout.split())
    assert written == (root / "large").stat().st_size
    return (after_kib - before_kib) / 1024


def test_memory_stays_bounded(emulator: Emulator, s3: Any, bucket: str, tmp_path: Path) -> None:
    """A 64 MiB download grows peak RSS by less than 48 MiB (the body is never held whole)."""
    size = 64 * MiB
    put(s3, bucket, "warm", os.urandom(2 * MiB))
    put(s3, bucket, "large", os.urandom(size))
    growth = _peak_growth_mib(emulator, bucket, tmp_path / "chunked", MiB)
    assert (tmp_path / "chunked" / "large").stat().st_size == size
    assert growth < 48, f"peak RSS grew by {growth:.1f} MiB for a 64 MiB object"
    # Control: one read of the whole body must show up, or the measure above proves nothing.
    whole = _peak_growth_mib(emulator, bucket, tmp_path / "whole", 1 << 30)
    assert whole >= 56, f"the measure missed a whole-body read ({whole:.1f} MiB)"
