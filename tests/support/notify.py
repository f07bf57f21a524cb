"""A stand-in for systemd's notification socket, for tests.

``NotifySocket`` binds an ``AF_UNIX`` datagram socket (the kind ``NOTIFY_SOCKET`` names) and a
reader thread records every field it receives as ``(time.monotonic(), "NAME=value")``. One
datagram may carry several newline-separated fields (``READY=1\\nSTATUS=...``); each becomes its
own record with the datagram's arrival time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 100


class NotifySocket:
    """A bound datagram socket plus a thread that records what arrives on it."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own_dir: str | None = None
        path = Path(directory) / "notify.sock" if directory is not None else None
        if path is None or len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            self._own_dir = tempfile.mkdtemp(prefix="n")
            path = Path(self._own_dir) / "s"
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(os.fspath(path))
        self._sock.settimeout(0.1)
        self._records: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._thread.start()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            fields = [line for line in data.decode("utf-8", "replace").split("\n") if line]
            with self._cond:
                self._records.extend((now, field) for field in fields)
                self._cond.notify_all()

    # -- queries ---------------------------------------------------------------------------

    @property
    def env_value(self) -> str:
        """The value to put in ``NOTIFY_SOCKET``."""
        return os.fspath(self.path)

    def records(self) -> list[tuple[float, str]]:
        with self._cond:
            return list(self._records)

    def messages(self) -> list[str]:
        return [field for _, field in self.records()]

    def times(self, field: str) -> list[float]:
        """Arrival times of every record equal to ``field`` (e.g. ``"WATCHDOG=1"``)."""
        return [at for at, value in self.records() if value == field]

    def values(self, name: str) -> list[str]:
        """The values of every ``NAME=value`` record with this name, in order."""
        prefix = name + "="
        return [value[len(prefix) :] for _, value in self.records() if value.startswith(prefix)]

    def index(self, field: str) -> int | None:
        """Position of the first record equal to ``field``, or None."""
        for i, (_, value) in enumerate(self.records()):
            if value == field:
                return i
        return None

    def wait_for(self, field: str, *, timeout: float = 10.0) -> float:
        """Wait until a record equal to ``field`` arrives; return its arrival time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, value in self._records:
                    if value == field:
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {field!r} on the notify socket;"
                        f" received {[v for _, v in self._records]!r}"
                    )
                self._cond.wait(remaining)
