"""``Tuner``: the thin adapter between the concurrency controller and the worker's parts.

On the loop thread: every ``SAMPLE_SECONDS`` it reads what the small lane finished, whether
its slots are all busy, the process's CPU and (once a second) its open files and memory, and
hands them to ``concurrency.Controller``; a change of target it applies to everything that
follows the concurrency: the small lane's cap (``Downloads``), the receive capacity and its
prefetch (``Capacity``), the receivers polling (``Receivers.follow``); and it logs one
``concurrency.changed`` line and sets the ``s3sqsd_workers_target`` gauge. With a fixed
``workers`` it only applies that number (and a reload's).

It also puts each message in its lane (``lane``): a message with an object of
``large_objects.threshold_bytes`` or more (as its event announces it) runs in the large lane,
and its place in hand is lent (``Capacity.lend``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from s3sqsd.config import LARGE_SLOTS
from s3sqsd.limits import PartShare
from s3sqsd.metrics import Metrics
from s3sqsd.worker.concurrency import (
    SAMPLE_SECONDS,
    Bounds,
    Change,
    Controller,
    Sample,
    pollers_for,
    prefetch_for,
)
from s3sqsd.worker.job import Downloads
from s3sqsd.worker.lease import Capacity, Lease
from s3sqsd.worker.plan import FetchItem, Item
from s3sqsd.worker.receiver import Receivers
from s3sqsd.worker.resources import Reading, Resources, verdict
from s3sqsd.worker.settings import WorkerSettings
from s3sqsd.worker.slots import LARGE, SMALL

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")

RESOURCES_EVERY_SECONDS = 1.0
IDLE_SAMPLE_SECONDS = 1.0  # between samples while nothing runs (see ``Tuner.tick``)


def lane_of(items: tuple[Item, ...], threshold: int | None) -> str:
    """``LARGE`` if an object of the message is announced at ``threshold`` bytes or more."""
    if threshold is None:
        return SMALL
    for item in items:
        if isinstance(item, FetchItem) and (item.obj.size or 0) >= threshold:
            return LARGE
    return SMALL


class Tuner:
    """Owns the capacity and the download lanes, and sizes them (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        pollers: int,
        metrics: Metrics,
        clock: Callable[[], float],
        resources: Resources | None = None,
        share: PartShare | None = None,
    ) -> None:
        self._settings = settings
        self._pollers = pollers
        self._metrics = metrics
        self._clock = clock
        self._resources = resources if resources is not None else Resources()
        self._share = share  # the large objects' ranges: fewer while small files wait
        self.target = settings.workers
        self._controller: Controller | None = None
        self.capacity = Capacity(limit=self._limit(), lane=self._large_slots())
        self.downloads = Downloads(small=self.target, large=self._large_slots(), metrics=metrics)
        self._receivers: Receivers | None = None
        self._next_sample = 0.0
        self._finished = 0  # downloads finished at the last sample (both lanes)
        self._next_reading = 0.0
        self._cpu_at: tuple[float, float] | None = None  # (wall, process CPU seconds)
        self._reading = Reading()
        self.update(settings)

    def start(self, receivers: Receivers) -> None:
        """Start the receivers, polling for the current target."""
        self._receivers = receivers
        self._apply(self.target)
        receivers.start()

    def lane(self, lease: Lease) -> str:
        """The lane of a message about to be submitted (loop thread); lends a large one its
        place in hand."""
        lane = lane_of(lease.items, self._settings.large_threshold_bytes)
        if lane == LARGE:
            self.capacity.lend(lease)
        return lane

    def update(self, settings: WorkerSettings) -> None:
        """Start, or a reload: a fixed ``workers`` is applied; ``auto`` keeps its controller
        (within the new bounds) or starts one from the current target."""
        self._settings = settings
        if not settings.auto:
            self._controller = None
            self._apply(settings.workers)
            return
        bounds = Bounds(settings.min_workers, settings.max_workers, start=settings.workers)
        if self._controller is None:
            self._controller = Controller(bounds, now=self._clock())
            self._controller.target = bounds.clamp(self.target)
            self._apply(self._controller.target)
            return
        change = self._controller.rebound(bounds)
        if change is not None:
            self._changed(change)

    def tick(self, now: float) -> None:
        """Once per loop pass, every ``SAMPLE_SECONDS`` (``IDLE_SAMPLE_SECONDS`` while no
        download runs or finishes: an idle daemon's samples all say "no backlog", and ten a
        second doubled its idle CPU): tells the large objects' ranges whether small files
        wait (``limits.PartShare``), and (``workers: auto``) takes a sample for the
        controller."""
        if now < self._next_sample:
            return
        finished = sum(self.downloads.completed(lane)[0] for lane in (SMALL, LARGE))
        idle = self.downloads.running() == 0 and finished == self._finished
        self._finished = finished
        self._next_sample = now + (IDLE_SAMPLE_SECONDS if idle else SAMPLE_SECONDS)
        if self._share is not None:
            self._share.small_waiting(self.downloads.full(SMALL))
        controller = self._controller
        if controller is None:
            return
        completed, size = self.downloads.completed(SMALL)
        hold, shrink = self._limits(now)
        change = controller.observe(
            Sample(
                now=now,
                completed=completed,
                bytes=size,
                saturated=self._backlog(),
                cpu=self._cpu(now),
                hold=hold,
                shrink=shrink,
                large=self.downloads.active(LARGE),
            )
        )
        if change is not None:
            self._changed(change)

    # ---- signals ---------------------------------------------------------------------------

    def _backlog(self) -> bool:
        """More work than the small lane takes: its slots are all busy, or the last receive
        brought all it asked for (receiving is the limit: ``Receivers.ahead``)."""
        if self.downloads.full(SMALL):
            return True
        return self._receivers is not None and self._receivers.ahead()

    def _cpu(self, now: float) -> float | None:
        """The process's CPU since the last sample, as a share of the CPUs it may use."""
        used = self._resources.cpu_seconds()
        last, self._cpu_at = self._cpu_at, (now, used)
        if last is None or now <= last[0]:
            return None
        return (used - last[1]) / (now - last[0]) / self._resources.cpus

    def _limits(self, now: float) -> tuple[str | None, str | None]:
        if now >= self._next_reading:
            self._next_reading = now + RESOURCES_EVERY_SECONDS
            self._reading = self._resources.read()
        hold, shrink = verdict(self._reading, target=self.target)
        if self._receivers is not None and self._receivers.paused():
            hold = hold or "disk"  # a local failure (disk full, read-only) paused receiving
        return hold, shrink

    # ---- applying a target -----------------------------------------------------------------

    def _changed(self, change: Change) -> None:
        self._apply(change.target)
        logger.info(
            "concurrency: %d downloads at once (was %d): %s",
            change.target,
            change.previous,
            change.reason,
            extra={
                "event": "concurrency.changed",
                "workers": change.target,
                "previous": change.previous,
                "reason": change.reason,
                "pollers": self._active_pollers(),
                "files_per_second": round(change.files_per_second, 1),
                "bytes_per_second": round(change.bytes_per_second),
            },
        )

    def _apply(self, target: int) -> None:
        self.target = target
        self.downloads.resize(SMALL, target)
        self.downloads.resize(LARGE, self._large_slots())
        self.capacity.resize(self._limit(), lane=self._large_slots())
        if self._receivers is not None:
            self._receivers.follow(target=target, pollers=self._active_pollers())
        self._metrics.set("workers_target", target)

    def _active_pollers(self) -> int:
        if not self._settings.auto:
            return self._pollers
        return pollers_for(self.target, self._pollers)

    def _limit(self) -> int:
        """The places in hand for the small lane: its slots and the receive prefetch."""
        if not self._settings.auto:  # as it always was: a prefetch of up to 10
            return self.target + min(self.target, 10)
        return self.target + prefetch_for(self.target, self._active_pollers())

    def _large_slots(self) -> int:
        if self._settings.auto:
            return LARGE_SLOTS
        return max(1, min(LARGE_SLOTS, math.ceil(self._settings.workers / 2)))
