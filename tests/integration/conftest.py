"""Fixtures of the integration tests that talk to the session's emulator without a daemon (the
fetcher tests): a client, a fresh bucket, a download folder, a fetcher on it, a pool for ranged
downloads, and the skip where ``tmp_path`` has no user xattrs. The emulator, the daemon and the
config fixtures are in tests/conftest.py; plain helpers in tests/support/fetching.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.fetcher import Fetcher
from tests.support.emulator import Emulator


@pytest.fixture
def s3(emulator: Emulator) -> Any:
    """A client of the emulator (a module may override it, e.g. with a checksum-less one)."""
    return emulator.client("s3")


@pytest.fixture
def bucket(emulator: Emulator, s3: Any) -> str:
    """A new bucket, made through ``s3``."""
    name = emulator.unique("bucket")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The download folder, not made yet (``Fetcher.prepare`` makes it)."""
    return tmp_path / "downloads"


@pytest.fixture
def make_fetcher(s3: Any, root: Path) -> Callable[..., Fetcher]:
    """``make_fetcher(**settings)``: a prepared Fetcher of ``s3`` into ``root``."""

    def make(**settings: Any) -> Fetcher:
        fetcher = Fetcher(s3=s3, root=root, **settings)
        fetcher.prepare()
        return fetcher

    return make


@pytest.fixture
def parts_pool() -> Iterator[ThreadPoolExecutor]:
    """The pool ranged downloads fetch their parts on."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-part")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def xattrs(tmp_path: Path) -> None:
    """Skip where ``tmp_path`` has no user xattrs (the provenance record needs them)."""
    probe = tmp_path / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        pytest.skip(f"tmp_path has no user xattrs ({exc.strerror}): provenance cannot be tested")
    finally:
        probe.unlink()
