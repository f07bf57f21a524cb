"""sd_notify, through the ``sdnotify`` package, with its errors surfaced once.

``sdnotify`` silently swallows every error unless ``debug=True``; we ask for the errors and log
the first one, so a broken NOTIFY_SOCKET is visible instead of a unit that never gets READY.
Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import sdnotify

logger = logging.getLogger(__name__)

# With debug=True sdnotify re-raises whatever its bare excepts caught.
_SDNOTIFY_ERRORS = (OSError, TypeError, ValueError, UnicodeError)


class Notifier:
    """READY/STATUS/WATCHDOG/STOPPING/RELOADING to the service manager, if there is one."""

    def __init__(self, *, enabled: bool = True) -> None:
        # sdnotify reads NOTIFY_SOCKET from the process environment itself, so we do too.
        env = os.environ if enabled else {}
        self._socket_path = env.get("NOTIFY_SOCKET", "")
        self._client: sdnotify.SystemdNotifier | None = None
        self._failed = False
        if self._socket_path:
            try:
                self._client = sdnotify.SystemdNotifier(debug=True)
            except _SDNOTIFY_ERRORS as exc:
                self._report(exc)
        self.watchdog_interval = _watchdog_interval(env)
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def send(self, *fields: str) -> None:
        """Send one datagram with ``fields`` joined by newlines."""
        if self._client is None:
            return
        try:
            self._client.notify("\n".join(fields))
        except _SDNOTIFY_ERRORS as exc:
            self._report(exc)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str = "") -> None:
        self.send("STOPPING=1", *((f"STATUS={status}",) if status else ()))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def status(self, text: str) -> None:
        """Update STATUS= only when it changed: each datagram wakes systemd."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def _report(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            logger.warning(
                "cannot notify the service manager through %s: %s",
                self._socket_path,
                exc,
                extra={"event": "notify.failed", "error": str(exc)},
            )


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC in seconds when the watchdog is meant for this process, else None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000
