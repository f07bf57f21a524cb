"""``Slots``: the download threads, in two lanes with caps that can change at any time.

A ``ThreadPoolExecutor`` has a fixed size: resizing means a new pool while the old one runs
what it queued, so for a moment both run (too many downloads after a shrink, a grown pool
idle while the old one works through its queue). Here each lane (``SMALL``, ``LARGE``) has a
FIFO of jobs and a cap on how many of them run; a thread that finishes a job takes the next
one a cap allows. Lowering a cap never stops a running job: fewer start until the lane is
under it again. Threads start when a job could start and none is idle, and end after
``IDLE_SECONDS`` without work (or at ``shutdown``).

The futures are plain ``concurrent.futures.Future``: ``cancel`` works on a queued job (the
drain releases unstarted messages that way) and done-callbacks run on the download thread,
as with a ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

SMALL = "small"
LARGE = "large"
LANES = (SMALL, LARGE)
IDLE_SECONDS = 60.0

T = TypeVar("T")


@dataclass(slots=True)
class _Job(Generic[T]):
    run: Callable[[], T]
    future: Future[T]


class Slots(Generic[T]):
    """The lanes, their caps, and the threads that run their jobs (see the module docstring)."""

    def __init__(self, caps: dict[str, int], *, name: str = "s3sqsd-download") -> None:
        self._condition = threading.Condition()
        self._caps = {lane: max(0, caps.get(lane, 0)) for lane in LANES}
        self._queues: dict[str, deque[_Job[T]]] = {lane: deque() for lane in LANES}
        self._running = dict.fromkeys(LANES, 0)
        self._threads = 0
        self._idle = 0
        self._closed = False
        self._name = name
        self._started = 0

    def submit(self, lane: str, run: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._condition:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._queues[lane].append(_Job(run, future))
            self._wake()
        return future

    def resize(self, lane: str, cap: int) -> None:
        """The lane's new cap: more jobs start now, or fewer start from now on."""
        with self._condition:
            self._caps[lane] = max(0, cap)
            self._wake()

    def cap(self, lane: str) -> int:
        with self._condition:
            return self._caps[lane]

    def running(self, lane: str | None = None) -> int:
        with self._condition:
            return sum(self._running[name] for name in LANES if lane in (None, name))

    def waiting(self, lane: str) -> int:
        """Jobs queued in ``lane`` (cancelled ones included until a thread drops them)."""
        with self._condition:
            return len(self._queues[lane])

    def full(self, lane: str) -> bool:
        """Every slot of ``lane`` busy: more would have started if the cap allowed."""
        with self._condition:
            return self._running[lane] >= self._caps[lane] > 0

    def shutdown(self) -> None:
        """No more jobs; queued ones are cancelled; idle threads end, busy ones after their job."""
        with self._condition:
            self._closed = True
            queued = [job for queue in self._queues.values() for job in queue]
            for queue in self._queues.values():
                queue.clear()
            self._condition.notify_all()
        for job in queued:
            job.future.cancel()

    # ---- under the condition ----------------------------------------------------------------

    def _startable(self) -> int:
        return sum(
            min(len(self._queues[lane]), max(0, self._caps[lane] - self._running[lane]))
            for lane in LANES
        )

    def _wake(self) -> None:
        startable = self._startable()
        if startable == 0:
            return
        self._condition.notify(startable)
        for _ in range(startable - self._idle):
            self._threads += 1
            self._started += 1
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{self._started}", daemon=True
            )
            thread.start()

    def _take(self) -> tuple[str, _Job[T]] | None:
        for lane in LANES:
            queue = self._queues[lane]
            while queue and self._running[lane] < self._caps[lane]:
                job = queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    self._running[lane] += 1
                    return lane, job
        return None

    # ---- the threads -------------------------------------------------------------------------

    def _work(self) -> None:
        with self._condition:
            taken = self._next()
        while taken is not None:
            lane, job = taken
            try:
                result = job.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the future, as an executor does
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            with self._condition:
                self._running[lane] -= 1
                taken = self._next()
                self._wake()  # a cap raised meanwhile may let others start too

    def _next(self) -> tuple[str, _Job[T]] | None:
        """The next job this thread may run, waiting up to ``IDLE_SECONDS`` for one; None: the
        thread ends (idle, or shut down)."""
        taken = self._take()
        while taken is None:
            if self._closed:
                self._threads -= 1
                return None
            self._idle += 1
            woken = self._condition.wait(IDLE_SECONDS)
            self._idle -= 1
            taken = self._take()
            if taken is None and not woken:
                self._threads -= 1
                return None
        return taken
