"""The concurrency tuner (the adapter), the lanes and the download slots, without a queue.

The tuner is driven with a fake clock and fake download counters; the slots run real threads
synchronised by events (never a fixed sleep).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from s3sqsd.events import ObjectCreated
from s3sqsd.limits import PartShare
from s3sqsd.metrics import Metrics
from s3sqsd.routing import Placement
from s3sqsd.sqs import Message
from s3sqsd.worker.lease import Capacity, Lease
from s3sqsd.worker.plan import FetchItem
from s3sqsd.worker.resources import Reading
from s3sqsd.worker.settings import WorkerSettings
from s3sqsd.worker.slots import LARGE, SMALL, Slots
from s3sqsd.worker.tuning import Tuner, lane_of
from tests.support.emulator import wait_until

AUTO = WorkerSettings(
    workers=8, auto=True, min_workers=4, max_workers=64, large_threshold_bytes=64 << 20
)


def item(size: int | None) -> FetchItem:
    obj = ObjectCreated(bucket="b", key=f"k{size}", event_name="ObjectCreated:Put", size=size)
    return FetchItem(obj=obj, placement=Placement(folder=None))  # type: ignore[arg-type]


def lease(*items: FetchItem, receipt: str = "r") -> Lease:
    message = Message(message_id="m", receipt_handle=receipt, body="{}", receive_count=1)
    return Lease(message=message, received_at=0.0, visible_until=30.0, items=items)


def test_a_message_with_a_large_object_goes_to_the_large_lane() -> None:
    threshold = 64 << 20
    assert lane_of((item(4096),), threshold) == SMALL
    assert lane_of((item(None),), threshold) == SMALL  # size unknown: not large
    assert lane_of((item(4096), item(threshold)), threshold) == LARGE
    assert lane_of((item(threshold),), None) == SMALL


def test_a_large_message_in_hand_takes_a_place_lent_beside_the_small_ones() -> None:
    capacity = Capacity(limit=2, lane=1)
    assert capacity.reserve(least=2, most=2, timeout=0) == 2
    big, other = lease(receipt="a"), lease(receipt="b")
    capacity.lend(big)
    capacity.lend(big)  # once
    assert capacity.free() == 1  # a small message may come in beside it
    capacity.lend(other)  # the lane has one place: this one keeps its ordinary place
    assert (big.lent, other.lent, capacity.free()) == (True, False, 1)
    capacity.give_back(big)
    capacity.give_back(big)
    assert capacity.free() == 1
    capacity.give_back(other)
    assert capacity.free() == 2


@dataclass
class FakeDownloads:
    """What the tuner reads of ``Downloads``: per-lane totals, whether a lane is full."""

    done: dict[str, int] = field(default_factory=lambda: {SMALL: 0, LARGE: 0})
    size: dict[str, int] = field(default_factory=lambda: {SMALL: 0, LARGE: 0})
    busy: dict[str, bool] = field(default_factory=lambda: {SMALL: True, LARGE: True})
    caps: dict[str, int] = field(default_factory=dict)

    def completed(self, lane: str = SMALL) -> tuple[int, int]:
        return self.done[lane], self.size[lane]

    def full(self, lane: str = SMALL) -> bool:
        return self.busy[lane]

    def active(self, lane: str) -> bool:
        return self.busy[lane]

    def running(self) -> int:
        return sum(1 for lane in (SMALL, LARGE) if self.busy[lane])  # a download per busy lane

    def resize(self, lane: str, cap: int) -> None:
        self.caps[lane] = cap


class FakeResources:
    cpus = 2.0

    @staticmethod
    def cpu_seconds() -> float:
        return 0.0

    @staticmethod
    def read() -> Reading:
        return Reading()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tuner(settings: WorkerSettings = AUTO) -> tuple[Tuner, FakeDownloads, Clock, Metrics]:
    clock, metrics = Clock(), Metrics()
    tuned = Tuner(
        settings=settings,
        pollers=1,
        metrics=metrics,
        clock=clock,
        resources=FakeResources(),  # type: ignore[arg-type]
    )
    fake = FakeDownloads()
    tuned.downloads = fake  # type: ignore[assignment]
    return tuned, fake, clock, metrics


def test_slow_large_downloads_do_not_stop_the_small_lane_growing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """4 large downloads fill their lane and finish nothing for a minute; the small files'
    lane finishes 20 files a second per slot: the target climbs on the small files alone."""
    tuned, fake, clock, metrics = tuner()
    caplog.set_level(logging.INFO, logger="s3sqsd.worker")
    files = 0.0
    while clock.now < 30:
        clock.now = round(clock.now + 0.1, 6)
        files += 20 * tuned.target * 0.1
        fake.done[SMALL] = int(files)
        fake.size[SMALL] = int(files) * 4096
        tuned.tick(clock.now)
    assert tuned.target == 64
    assert fake.caps == {SMALL: 64, LARGE: 4}
    assert metrics.get("workers_target") == 64
    assert tuned.capacity.limit() == 64 + 64  # 8 pollers, 10 each, at most the slots
    changes = [r for r in caplog.records if getattr(r, "event", "") == "concurrency.changed"]
    assert [(r.previous, r.workers) for r in changes] == [(8, 16), (16, 32), (32, 64)]  # type: ignore[attr-defined]
    assert all(r.reason == "ramp" for r in changes)  # type: ignore[attr-defined]


def test_without_backlog_the_tuner_changes_nothing() -> None:
    tuned, fake, clock, _metrics = tuner()
    fake.busy[SMALL] = False
    files = 0.0
    while clock.now < 120:
        clock.now = round(clock.now + 0.1, 6)
        files += 20 * tuned.target * 0.1
        fake.done[SMALL] = int(files)
        tuned.tick(clock.now)
    assert tuned.target == 8


@dataclass
class FakeReceivers:
    """What the tuner reads of ``Receivers``: whether the last receive was full, and the
    pollers it asked for."""

    full: bool = True
    followed: list[tuple[int, int]] = field(default_factory=list)

    def start(self) -> None:
        pass

    def follow(self, *, target: int, pollers: int) -> None:
        self.followed.append((target, pollers))

    def paused(self) -> bool:
        return False

    def ahead(self) -> bool:
        return self.full


def receive_limited(*, ahead: bool) -> tuple[Tuner, FakeReceivers]:
    """100 ms of round trip: a slot finishes 10 files a second, a poller brings 10 messages per
    round trip, 8 of which arrive in time: the pollers are the limit, and the slots are never
    all busy."""
    tuned, fake, clock, _metrics = tuner()
    fake.busy[SMALL] = False
    receivers = FakeReceivers(full=ahead)
    tuned.start(receivers)  # type: ignore[arg-type]
    files = 0.0
    while clock.now < 60:
        clock.now = round(clock.now + 0.1, 6)
        pollers = receivers.followed[-1][1]
        files += min(10 * tuned.target, 80 * pollers) * 0.1
        fake.done[SMALL] = int(files)
        fake.size[SMALL] = int(files) * 4096
        tuned.tick(clock.now)
    return tuned, receivers


def test_a_receive_limited_backlog_grows_the_target_and_the_pollers_with_it() -> None:
    """The slots are never all busy, but every receive brings all it asked for: the queue
    holds more, so that is backlog. The target climbs and brings a poller per 8 slots, which
    is what lifts the limit (one per 16 would leave 16 slots fed by one poller: no gain)."""
    tuned, receivers = receive_limited(ahead=True)
    assert tuned.target == 64
    assert receivers.followed[0] == (8, 1)
    assert receivers.followed[-1] == (64, 8)


def test_short_receives_and_idle_slots_are_no_backlog() -> None:
    tuned, receivers = receive_limited(ahead=False)
    assert tuned.target == 8
    assert receivers.followed == [(8, 1)]


@pytest.mark.parametrize("settings", [AUTO, WorkerSettings(workers=8)], ids=["auto", "fixed"])
def test_the_large_objects_are_told_when_small_files_wait(settings: WorkerSettings) -> None:
    """Every sample, with auto or a fixed count: the small lane's slots all busy means small
    files wait, and the large objects' ranges take turns (limits.PartShare)."""
    clock, fake = Clock(), FakeDownloads()
    share = PartShare()
    tuned = Tuner(
        settings=settings,
        pollers=1,
        metrics=Metrics(),
        clock=clock,
        resources=FakeResources(),  # type: ignore[arg-type]
        share=share,
    )
    tuned.downloads = fake  # type: ignore[assignment]
    seen = []
    for busy in (True, True, False, True, False):
        fake.busy[SMALL] = busy
        clock.now = round(clock.now + 0.15, 6)  # a sample each time (every 0.1 s)
        tuned.tick(clock.now)
        seen.append(share.waiting())
    assert seen == [True, True, False, True, False]


class CountingResources(FakeResources):
    def __init__(self) -> None:
        self.samples = 0

    def cpu_seconds(self) -> float:  # type: ignore[override]
        self.samples += 1  # read once per sample
        return 0.0


@pytest.mark.parametrize(("busy", "samples"), [(False, 10), (True, 100)])
def test_an_idle_daemon_samples_once_a_second(busy: bool, samples: int) -> None:
    """Nothing runs and nothing finishes: one sample a second, not ten (an idle daemon's
    CPU). Downloads running: ten a second."""
    clock, fake, resources = Clock(), FakeDownloads(), CountingResources()
    tuned = Tuner(
        settings=AUTO,
        pollers=1,
        metrics=Metrics(),
        clock=clock,
        resources=resources,  # type: ignore[arg-type]
    )
    tuned.downloads = fake  # type: ignore[assignment]
    fake.busy = {SMALL: busy, LARGE: False}
    while clock.now < 10:
        clock.now = round(clock.now + 0.05, 6)
        tuned.tick(clock.now)
    assert 0.9 * samples <= resources.samples <= samples + 1  # a tick may land just short


def test_a_fixed_count_is_applied_and_never_moved() -> None:
    fixed = WorkerSettings(workers=8)
    tuned, fake, clock, metrics = tuner(fixed)
    while clock.now < 30:
        clock.now = round(clock.now + 0.1, 6)
        fake.done[SMALL] += 100
        tuned.tick(clock.now)
    assert tuned.target == 8
    assert tuned.capacity.limit() == 16  # 8 and a prefetch of 8, as before auto
    tuned.update(WorkerSettings(workers=20))
    assert (fake.caps[SMALL], fake.caps[LARGE], tuned.capacity.limit()) == (20, 4, 30)
    assert metrics.get("workers_target") == 20
    tuned.update(WorkerSettings(workers=1))
    assert (fake.caps[SMALL], fake.caps[LARGE]) == (1, 1)


def test_a_reload_switches_between_fixed_and_auto() -> None:
    tuned, fake, _clock, _metrics = tuner(WorkerSettings(workers=30))
    tuned.update(AUTO)  # auto from where it was
    assert tuned.target == 30
    tuned.update(WorkerSettings(workers=30, auto=True, min_workers=4, max_workers=12))
    assert (tuned.target, fake.caps[SMALL]) == (12, 12)


# ---- the slots ------------------------------------------------------------------------------


def blocking(started: threading.Event, release: threading.Event, out: str = "done"):  # type: ignore[no-untyped-def]
    def run() -> str:
        started.set()
        release.wait(10)
        return out

    return run


def test_a_lower_cap_never_stops_a_running_job_and_fewer_start() -> None:
    slots: Slots[str] = Slots({SMALL: 3, LARGE: 1})
    release = threading.Event()
    started = [threading.Event() for _ in range(5)]
    futures = [slots.submit(SMALL, blocking(event, release)) for event in started]
    wait_until(lambda: slots.running(SMALL) == 3, what="three running")
    assert slots.waiting(SMALL) == 2
    assert slots.full(SMALL)
    slots.resize(SMALL, 1)
    assert slots.running(SMALL) == 3  # nothing stopped
    assert not any(f.cancelled() or f.done() for f in futures)
    release.set()
    wait_until(lambda: all(f.done() for f in futures), what="all done")
    assert [f.result() for f in futures] == ["done"] * 5
    slots.shutdown()


def test_a_raised_cap_starts_waiting_jobs_at_once() -> None:
    slots: Slots[str] = Slots({SMALL: 1, LARGE: 1})
    release = threading.Event()
    started = [threading.Event() for _ in range(3)]
    for event in started:
        slots.submit(SMALL, blocking(event, release))
    wait_until(lambda: slots.running(SMALL) == 1, what="one running")
    slots.resize(SMALL, 3)
    wait_until(lambda: all(e.is_set() for e in started), what="all three started")
    release.set()
    slots.shutdown()


def test_a_full_large_lane_never_holds_up_the_small_one() -> None:
    slots: Slots[str] = Slots({SMALL: 2, LARGE: 1})
    release = threading.Event()
    large = [slots.submit(LARGE, blocking(threading.Event(), release)) for _ in range(3)]
    wait_until(lambda: slots.running(LARGE) == 1, what="the large lane full")
    small = [slots.submit(SMALL, lambda: "small") for _ in range(20)]
    wait_until(lambda: all(f.done() for f in small), what="every small job done")
    assert slots.running(LARGE) == 1
    assert slots.waiting(LARGE) == 2
    release.set()
    wait_until(lambda: all(f.done() for f in large), what="large ones done")
    slots.shutdown()


def test_a_queued_job_can_be_cancelled_and_shutdown_cancels_the_rest() -> None:
    slots: Slots[str] = Slots({SMALL: 1, LARGE: 1})
    release = threading.Event()
    first = slots.submit(SMALL, blocking(threading.Event(), release))
    wait_until(lambda: slots.running(SMALL) == 1, what="running")
    second = slots.submit(SMALL, lambda: "second")
    third = slots.submit(SMALL, lambda: "third")
    assert second.cancel()
    slots.shutdown()
    assert third.cancelled()
    release.set()
    assert first.result(timeout=10) == "done"
    with pytest.raises(RuntimeError):
        slots.submit(SMALL, lambda: "late")


def test_an_exception_goes_to_the_future() -> None:
    slots: Slots[str] = Slots({SMALL: 1, LARGE: 1})

    def fail() -> str:
        raise ValueError("boom")

    future = slots.submit(SMALL, fail)
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=10)
    assert slots.submit(SMALL, lambda: "next").result(timeout=10) == "next"
    slots.shutdown()


def test_resource_readings_never_raise(tmp_path: Path) -> None:
    """The resource readings work on this host (or say unknown), never raise."""
    from s3sqsd.worker.resources import Resources

    resources = Resources(cgroup_root=tmp_path)
    reading = resources.read()
    assert resources.cpus > 0
    assert reading.open_files is None or reading.open_files > 0
