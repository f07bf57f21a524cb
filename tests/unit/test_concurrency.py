"""The ``workers: auto`` controller's decisions, with a fake clock and a fake throughput curve.

Nothing here sleeps or times anything: a simulated run feeds ``Controller.observe`` a sample
every ``SAMPLE_SECONDS`` of fake time, with the completions the curve gives at the current
target (as if the small lane's slots were all busy, unless the test says otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from s3sqsd.worker.concurrency import (
    CPU_BUSY,
    HOLD_SECONDS,
    IDLE_RESET_SECONDS,
    SAMPLE_SECONDS,
    Bounds,
    Change,
    Controller,
    Sample,
    deletes_for,
    pollers_for,
    prefetch_for,
)
from s3sqsd.worker.resources import Reading, verdict

BOUNDS = Bounds(4, 64)
FILE = 4096


@dataclass
class Run:
    """A simulated daemon: ``curve(target, now)`` is the small lane's files per second."""

    curve: Callable[[int, float], float]
    bounds: Bounds = BOUNDS
    saturated: Callable[[float], bool] = lambda _now: True
    cpu: Callable[[int], float | None] = lambda _target: 0.2
    hold: Callable[[float], str | None] = lambda _now: None
    shrink: Callable[[float], str | None] = lambda _now: None
    large: Callable[[float], bool] = lambda _now: False
    file_bytes: int = FILE
    now: float = 0.0
    changes: list[Change] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.controller = Controller(self.bounds, now=self.now)
        self._done = 0.0

    def until(self, end: float) -> Run:
        while self.now < end:
            self.now = round(self.now + SAMPLE_SECONDS, 6)
            target = self.controller.target
            self._done += self.curve(target, self.now) * SAMPLE_SECONDS
            change = self.controller.observe(
                Sample(
                    now=self.now,
                    completed=int(self._done),
                    bytes=int(self._done) * self.file_bytes,
                    saturated=self.saturated(self.now),
                    cpu=self.cpu(target),
                    hold=self.hold(self.now),
                    shrink=self.shrink(self.now),
                    large=self.large(self.now),
                )
            )
            if change is not None:
                assert change.previous == target
                self.changes.append(change)
            self.targets.append(self.controller.target)
        return self

    @property
    def target(self) -> int:
        return self.controller.target


def knee(at: int, per_slot: float) -> Callable[[int, float], float]:
    """Linear in the slots up to ``at``, flat after: what a round trip then a CPU bound give."""
    return lambda target, _now: per_slot * min(target, at)


def test_it_starts_at_eight_within_the_bounds() -> None:
    assert Controller(BOUNDS, now=0).target == 8
    assert Controller(Bounds(10, 64), now=0).target == 10
    assert Controller(Bounds(1, 4), now=0).target == 4


@pytest.mark.parametrize("at", [10, 24, 32, 48])
def test_growing_then_flat_throughput_settles_near_the_knee(at: int) -> None:
    """Between the knee and twice the knee: every doubling below it pays, the one past it
    is undone or kept for the little it brought."""
    run = Run(knee(at, per_slot=25)).until(60)
    assert at <= run.target < 2 * at
    assert run.changes[0].reason == "ramp"
    assert run.changes[0].target == 16


def test_it_ramps_fast_while_every_slot_pays() -> None:
    """At 100 ms of round trip every slot adds files until the bound: 64 in a few seconds."""
    run = Run(knee(1000, per_slot=5)).until(10)
    assert run.target == 64
    assert [c.target for c in run.changes] == [16, 32, 64]


def test_sublinear_gains_keep_it_climbing() -> None:
    """Cores shared with other work: each doubling brings a third more, not twice as much
    (as measured at 20 ms on the 2-core benchmark machine). Worth climbing: it doubles to the
    bound, where a rule asking half again of each doubling held at 16."""
    run = Run(lambda t, _now: 40.0 * t**0.4).until(20)
    assert [c.target for c in run.changes] == [16, 32, 64]
    assert all(c.reason == "ramp" for c in run.changes)


def test_a_doubling_that_brings_little_is_kept_and_held() -> None:
    """A doubling that brings 10 %: more than nothing, less than the climb asks; kept, held."""
    run = Run(lambda t, _now: 200.0 * (1.1 if t > 8 else 1.0)).until(20)
    assert [c.target for c in run.changes] == [16]
    assert run.target == 16


def test_flat_throughput_goes_back_to_where_it_was() -> None:
    """The CPU was already the bound at 8 (loopback): 16 brings nothing and is undone."""
    run = Run(lambda _t, _now: 190.0).until(20)
    assert run.target == 8
    assert [c.target for c in run.changes] == [16, 8]
    assert run.changes[1].reason == "no gain above 8"


def test_it_never_leaves_the_bounds() -> None:
    for bounds in (Bounds(4, 12), Bounds(8, 8), Bounds(20, 30)):
        run = Run(knee(1000, per_slot=5), bounds=bounds).until(120)
        assert all(bounds.least <= t <= bounds.most for t in run.targets)
        assert run.target == bounds.most
    falling = Run(lambda t, _now: 1000.0 / t, bounds=Bounds(6, 64)).until(300)
    assert all(6 <= t <= 64 for t in falling.targets)


def test_no_growth_without_backlog() -> None:
    """An idle daemon (its slots never all busy) learns nothing and never ramps."""
    run = Run(knee(1000, per_slot=5), saturated=lambda _now: False).until(120)
    assert run.changes == []
    assert run.target == 8


def test_no_growth_with_backlog_in_less_than_half_the_samples() -> None:
    run = Run(knee(1000, per_slot=5), saturated=lambda now: round(now * 10) % 4 == 0).until(60)
    assert run.changes == []


def test_an_idle_spell_brings_it_back_to_the_start() -> None:
    busy_until = 20.0
    run = Run(knee(1000, per_slot=5), saturated=lambda now: now < busy_until).until(busy_until)
    assert run.target == 64
    run.until(busy_until + IDLE_RESET_SECONDS - 1)
    assert run.target == 64
    run.until(busy_until + IDLE_RESET_SECONDS + 11)
    assert run.target == 8
    assert run.changes[-1].reason == "idle"


def test_a_saturated_cpu_stops_growth() -> None:
    run = Run(knee(1000, per_slot=5), cpu=lambda _t: CPU_BUSY).until(120)
    assert run.target == 8
    assert run.changes == []


def test_the_cpu_stops_growth_where_it_fills() -> None:
    """The CPU grows with the slots (3 % each): at 32 slots it is 96 %, and growth stops."""
    run = Run(knee(1000, per_slot=5), cpu=lambda t: 0.03 * t).until(120)
    assert run.target == 32
    assert all(0.03 * c.previous < CPU_BUSY for c in run.changes if c.target > c.previous)


def test_a_resource_that_says_stop_holds_and_one_under_pressure_shrinks() -> None:
    held = Run(knee(1000, per_slot=5), hold=lambda _now: "open files").until(60)
    assert held.changes == []
    pressed = Run(knee(1000, per_slot=5), shrink=lambda now: "memory" if now > 10 else None)
    pressed.until(10)
    assert pressed.target == 64
    pressed.until(40)
    assert pressed.target == 4
    assert {c.reason for c in pressed.changes[3:]} == {"memory"}
    assert all(c.target < c.previous for c in pressed.changes[3:])


def test_falling_throughput_shrinks() -> None:
    """At 32 slots a contention appears (each slot past 8 now costs throughput): the fall is
    seen and the target steps down while fewer do at least as well."""

    def curve(target: int, now: float) -> float:
        if now < 30:
            return 25.0 * min(target, 32)
        return max(50.0, 800.0 - 25.0 * max(0, target - 8))

    run = Run(curve).until(30)
    assert run.target == 32
    run.until(120)
    assert run.target < 16
    assert any(c.reason == "throughput fell" for c in run.changes)


def test_a_fall_while_large_objects_download_is_not_contention() -> None:
    """From 20 s large objects download and take half the small lane's rate, whatever its
    slots (they share the CPU and the link). Stepping down would only make the small files
    wait: the target stays where it was, and no step down is logged."""

    def curve(target: int, now: float) -> float:
        return 25.0 * min(target, 32) * (0.5 if 20 <= now < 50 else 1.0)

    run = Run(curve, large=lambda now: 20 <= now < 50).until(60)
    assert run.target == 32
    assert "throughput fell" not in [c.reason for c in run.changes]
    # Without large downloads the same fall is taken as contention, as before.
    assert "throughput fell" in [c.reason for c in Run(curve).until(60).changes]


def test_a_loss_below_is_undone() -> None:
    """Probing down from the knee loses throughput: it goes back up and holds."""

    def curve(target: int, now: float) -> float:
        dip = 0.5 if 30 <= now < 31.5 else 1.0  # a stall: the rate falls for a window or three
        return 25.0 * min(target, 32) * dip

    run = Run(curve).until(60)
    assert run.target == 32
    reasons = [c.reason for c in run.changes]
    assert "throughput fell" in reasons
    assert reasons[reasons.index("throughput fell") + 1] == "a loss below 32"


def test_it_probes_again_after_holding_and_less_often_each_time() -> None:
    run = Run(knee(32, per_slot=25)).until(HOLD_SECONDS + 10)
    probes = [c for c in run.changes if c.reason == "probe"]
    assert len(probes) == 1
    assert probes[0].target == 40
    run.until(3600)
    probes = [c for c in run.changes if c.reason == "probe"]
    assert 3 <= len(probes) <= 3600 / HOLD_SECONDS / 4  # backed off: a few an hour
    assert run.target == 32
    assert [probe.target for probe in probes] == [40] * len(probes)
    # When each probe began (in samples): the waits between them double up to the cap (a
    # sample's jitter allowed).
    begun = [i for i in range(1, len(run.targets)) if run.targets[i - 1 : i + 1] == [32, 40]]
    waits = [later - earlier for earlier, later in pairwise(begun)]
    assert all(later >= earlier - 2 for earlier, later in pairwise(waits))
    assert waits[-1] >= 8 * waits[0]


def test_a_probe_finds_a_better_network() -> None:
    """Held at the knee, the link gets better (the knee moves to 64): a probe finds it."""
    run = Run(lambda t, now: 25.0 * min(t, 32 if now < 40 else 64)).until(40)
    assert run.target == 32
    run.until(300)
    assert run.target == 64


def test_bytes_count_as_much_as_files() -> None:
    """Objects of 50 MiB: fewer files per second than slots would suggest, but bytes per
    second grow with the slots: it climbs on bytes."""
    mib = 1 << 20
    run = Run(knee(48, per_slot=0.5), file_bytes=50 * mib).until(120)
    assert 48 <= run.target < 96


def test_a_reload_rebounds_the_target() -> None:
    run = Run(knee(1000, per_slot=5)).until(10)
    assert run.target == 64
    change = run.controller.rebound(Bounds(4, 20))
    assert change is not None
    assert (change.target, change.reason) == (20, "bounds")
    assert run.controller.rebound(Bounds(4, 20)) is None
    run.until(60)
    assert run.target == 20


def test_pollers_and_prefetch_follow_the_target() -> None:
    """One poller per 8 slots: a poller brings 10 messages per round trip, a slot takes about
    one per round trip, so the receive stays ahead; the prefetch is then a round's worth."""
    assert [pollers_for(t, 1) for t in (4, 8, 9, 16, 17, 32, 64, 256)] == [1, 1, 2, 2, 3, 4, 8, 32]
    assert pollers_for(8, 3) == 3  # never fewer than configured
    assert [prefetch_for(t, pollers_for(t, 1)) for t in (4, 8, 16, 32, 64)] == [4, 8, 16, 32, 64]
    assert prefetch_for(64, 3) == 30  # up to 10 per poller


def test_delete_batches_in_flight_follow_the_target() -> None:
    """One DeleteMessageBatch in flight per 10 slots, at least 1, at most 8 (the SQS control
    client's pool has room for them and the loop's own calls)."""
    targets = (1, 8, 10, 11, 30, 64, 80, 81, 256)
    assert [deletes_for(t) for t in targets] == [1, 1, 1, 2, 3, 7, 8, 8, 8]


@pytest.mark.parametrize(
    ("reading", "target", "expected"),
    [
        (Reading(), 64, (None, None)),
        (Reading(open_files=100, max_files=1024), 64, (None, None)),
        (Reading(open_files=600, max_files=1024), 64, ("open files", None)),
        (Reading(open_files=950, max_files=1024), 64, (None, "open files")),
        (Reading(memory=81, max_memory=100), 8, ("memory", None)),
        (Reading(memory=95, max_memory=100), 8, (None, "memory")),
        (
            Reading(open_files=950, max_files=1024, memory=81, max_memory=100),
            8,
            ("memory", "open files"),
        ),
    ],
)
def test_resource_verdicts(reading: Reading, target: int, expected: tuple[str | None, ...]) -> None:
    assert verdict(reading, target=target) == expected
