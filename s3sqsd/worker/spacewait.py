"""Messages waiting for disk space: ``min_free_bytes`` (limits.SpaceFloor) refused their download.

Such a message takes the path of every local failure (failures.py: kept in hand, its
visibility renewed, tried again; a receive pause), tried again every few seconds. This part
adds what a floor needs on top: receiving is held as long as any message waits (not just for
a retry delay), and the waiting is said once, not once per try: one warning when the first
message starts waiting, one info line when none is left (their downloads went ahead, or they
left the host's hands), the ``paused{reason="disk"}`` gauge, and a mention in ``STATUS=``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from s3sqsd.errors import LowSpaceError, MessageError
from s3sqsd.metrics import Metrics
from s3sqsd.preflight import format_bytes
from s3sqsd.worker.lease import Lease

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")

REASON = "disk"  # the ``reason`` label of the ``paused`` gauge


class SpaceWait:
    """The leases waiting for space (loop thread only). ``hold(True)`` holds the receivers,
    ``hold(False)`` lets them go on."""

    def __init__(
        self, *, metrics: Metrics, hold: Callable[[bool], None], clock: Callable[[], float]
    ) -> None:
        self._metrics = metrics
        self._hold = hold
        self._clock = clock
        self._waiting: dict[int, tuple[Lease, LowSpaceError]] = {}
        self._since = 0.0
        metrics.set("paused", 0, reason=REASON)

    def __len__(self) -> int:
        return len(self._waiting)

    def kept(self, lease: Lease, exc: MessageError) -> None:
        """``lease`` is kept after a local failure: waiting when ``exc`` is a LowSpaceError
        (the first one pauses receiving)."""
        if not isinstance(exc, LowSpaceError):
            return
        first = not self._waiting
        self._waiting[id(lease)] = (lease, exc)
        if not first:
            return
        self._since = self._clock()
        self._hold(True)
        self._metrics.set("paused", 1, reason=REASON)
        logger.warning(
            "%s; receiving paused, and messages in hand kept, until there is room",
            exc,
            extra={
                "event": "disk.low_space",
                "path": str(exc.folder),
                "free_bytes": exc.free,
                "size": exc.size,
                "min_free_bytes": exc.floor,
                "message_id": lease.message.message_id,
            },
        )

    def finished(self, lease: Lease, error: MessageError | None) -> None:
        """``lease``'s download is over: unless it waits again (``error`` a LowSpaceError,
        ``kept`` follows), it no longer waits."""
        if isinstance(error, LowSpaceError):
            return
        if self._waiting.pop(id(lease), None) is not None and not self._waiting:
            self._resume()

    def sweep(self, held: Callable[[Lease], bool]) -> None:
        """Forget the leases no longer in hand (released, their receipt gone)."""
        gone = [key for key, (lease, _) in self._waiting.items() if not held(lease)]
        for key in gone:
            del self._waiting[key]
        if gone and not self._waiting:
            self._resume()

    def status(self) -> str | None:
        """The STATUS line's words while messages wait, naming the latest refusal."""
        if not self._waiting:
            return None
        exc = list(self._waiting.values())[-1][1]
        return (
            f"paused: {len(self._waiting)} waiting for disk space ({exc.folder}: "
            f"{format_bytes(exc.free)} free, min_free_bytes {format_bytes(exc.floor)})"
        )

    def _resume(self) -> None:
        self._hold(False)
        self._metrics.set("paused", 0, reason=REASON)
        seconds = self._clock() - self._since
        logger.info(
            "no download waits for disk space any more: receiving resumed after %.0f s",
            seconds,
            extra={"event": "disk.space_recovered", "duration_ms": int(seconds * 1000)},
        )
