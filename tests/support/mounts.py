"""tmpfs and bind mounts made by a test (root only), undone at teardown, lazily as a last
resort. Outside CI a test that cannot mount is skipped; under CI (root) it fails instead."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cannot_mount(reason: str) -> None:
    """Skip, except under CI (which runs as root), where a test that cannot run must fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cannot mount a tmpfs under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


class Mounts:
    """Mounts made by one test, undone in reverse order at teardown."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._mounted: list[Path] = []

    def tmpfs(self, name: str, *, size: str, read_only: bool = False) -> Path:
        path = self._base / name
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size},mode=0755" + (",ro" if read_only else "")
        result = _run("mount", "-t", "tmpfs", "-o", options, "s3sqsd-test", str(path))
        if result.returncode != 0:
            _cannot_mount(f"mount -t tmpfs failed: {result.stderr.strip()}")
        self._mounted.append(path)
        return path

    def bind(self, source: Path, name: str, *, read_only: bool = False) -> Path:
        path = self._base / name
        path.mkdir(parents=True, exist_ok=True)
        result = _run("mount", "--bind", str(source), str(path))
        if result.returncode != 0:
            _cannot_mount(f"mount --bind failed: {result.stderr.strip()}")
        self._mounted.append(path)
        if read_only:
            self.remount(path, "bind,ro")
        return path

    def unmount(self, path: Path, *, lazy: bool = False) -> None:
        """``lazy``: detach it even while a process holds it open (``umount -l``), as a failing
        disk or a forced unmount takes a file system away under a running daemon."""
        result = _run("umount", *(["-l"] if lazy else []), str(path))
        assert result.returncode == 0, f"umount {path}: {result.stderr}"
        self._mounted.remove(path)

    def busy(self, path: Path) -> bool:
        """Whether a plain ``umount`` is refused because the file system is in use."""
        result = _run("umount", str(path))
        if result.returncode == 0:
            self._mounted.remove(path)
            return False
        return "busy" in result.stderr

    def remount(self, path: Path, options: str) -> None:
        result = _run("mount", "-o", f"remount,{options}", str(path))
        assert result.returncode == 0, f"remount,{options} {path}: {result.stderr}"

    def unmount_all(self) -> None:
        for path in reversed(self._mounted):
            if _run("umount", str(path)).returncode != 0:
                _run("umount", "-l", str(path))
        self._mounted.clear()


@contextlib.contextmanager
def mounted_under(tmp_path: Path) -> Iterator[Mounts]:
    """Mounts under ``tmp_path``; the ``mounts`` fixture (tests/conftest.py) wraps it."""
    if os.geteuid() != 0:
        _cannot_mount("needs root to mount a tmpfs")
    made = Mounts(tmp_path / "mnt")
    try:
        yield made
    finally:
        made.unmount_all()
