"""bench/run.py leaves the folders of many small files for the end of the benchmark.

On ext4 without a journal, creating a file passes over every inode freed in the last minutes;
a contestant started right after the previous one's 2,000 files were removed paid for them.
These tests check the rule on a real folder: a few files go at once, many stay for the end.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.harness import REMOVE_AT_ONCE_MAX_FILES
from bench.run import scratch_folder

pytestmark = pytest.mark.integration


def _run_with_files(workdir: Path, count: int) -> Path:
    ctx: Any = SimpleNamespace(workdir=workdir)
    with scratch_folder(ctx, "a-s3sqsd") as folder:
        for i in range(count):
            (folder / f"k{i}.bin").write_bytes(b"x")
    return folder


def test_a_folder_of_a_few_large_files_is_removed_at_once(tmp_path: Path) -> None:
    folder = _run_with_files(tmp_path, 8)
    assert not folder.exists()


def test_a_folder_of_many_small_files_stays_for_the_end(tmp_path: Path) -> None:
    folder = _run_with_files(tmp_path, REMOVE_AT_ONCE_MAX_FILES + 1)
    assert folder.is_dir()
    assert len(list(folder.iterdir())) == REMOVE_AT_ONCE_MAX_FILES + 1
