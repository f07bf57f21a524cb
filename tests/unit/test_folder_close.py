"""folder.py: a sync's folder closes its sub-folder's descriptor exactly once.

``close`` used to close it and leave the ``weakref.finalize`` registered at ``prepare`` armed,
so when the folder object was collected the finalizer closed the same number again: by then
another object's descriptor (a socket, a pipe) in the same process. In the test suite it showed
as ``EBADF`` in the emulator's request threads and in a subprocess pipe.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from s3sqsd.folder import DownloadFolder, FolderRole


def test_a_closed_sync_folder_never_closes_a_descriptor_again(tmp_path: Path) -> None:
    folder = DownloadFolder(root=tmp_path / "in", directory_mode=0o750, role=FolderRole.SYNC)
    folder.prepare()
    work_fd = folder._work_fd
    assert work_fd is not None
    folder.close()
    # Another object now gets that very number, as the kernel hands out the lowest free one.
    other = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if other != work_fd:
            os.dup2(other, work_fd)
            os.close(other)
            other = work_fd
        del folder
        gc.collect()
        os.fstat(other)  # still open: the collected folder did not close it
    finally:
        os.close(other)


def test_a_sync_folder_dropped_without_close_lets_go_of_its_descriptor(tmp_path: Path) -> None:
    folder = DownloadFolder(root=tmp_path / "in", directory_mode=0o750, role=FolderRole.SYNC)
    folder.prepare()
    work_fd = folder._work_fd
    assert work_fd is not None
    del folder
    gc.collect()
    try:
        os.fstat(work_fd)
    except OSError:
        return
    raise AssertionError(f"descriptor {work_fd} is still open after the folder was dropped")
