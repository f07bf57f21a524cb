"""``workers: auto``: how many downloads run at once, found by climbing the throughput hill.

Pure: no threads, no clock of its own, no I/O. ``Controller.observe`` is fed one ``Sample`` at
a time (the adapter, ``tuning.Tuner``, takes one on the loop thread every ``SAMPLE_SECONDS``)
and answers a new target, or None to keep the current one. The tests drive it with a fake
clock and a fake throughput curve.

**What it measures.** Only the downloads of the *small lane*: messages whose objects are all
below ``large_objects.threshold_bytes`` (a large one runs in a lane of its own, ``LARGE_SLOTS``
at once; see *Fairness*). A window's throughput is its completions per second and its bytes
per second; a step is judged by whichever of the two gained more, so a mix of 4 KiB and 40 MiB
objects is judged by the files it finishes and by the bytes it moves, and a window that
happens to hold fewer large files does not read as a loss of bytes alone.

**Windows.** After every change the first completions (half a round: ``target / 2``) are let
go (new slots fill, the receive prefetch catches up), then a window lasts at least
``MIN_WINDOW_SECONDS`` and ``2 * target`` completions (two rounds of every slot), at most
``MAX_WINDOW_SECONDS``. At 20 ms of round trip and 8 slots that is half a second; at 100 ms
and 64 slots, about two seconds. Shorter windows (a quarter of a second until issue 17's
second round) held 50-60 files on loopback, too few to tell a 20 % gain from the noise.

**Backlog.** A window counts only if there was more work than the slots took (``saturated``)
in at least half of its samples: the slots were all busy, or the last receive brought all it
asked for (the queue holds more: receiving is the limit, and more slots bring more pollers).
More slots cannot help a daemon with an idle queue. Such a window changes nothing, so an idle
daemon never ramps; and after ``IDLE_RESET_SECONDS`` without backlog the target goes back to
where it starts, so the next burst starts from a known place (and an idle daemon keeps one
poller).

**The climb** (``Controller._judge``):

- *Ramp* (TCP's slow start): from the start (8) the target doubles while each doubling
  brings at least ``EFFICIENCY`` of its promise (doubling the slots must bring 20 % more); so
  8 -> 16 -> 32 -> 64 takes a few seconds at 20 ms of round trip. Why 20 % and not half:
  where the process shares its cores (with other work, or with the S3 client's own CPU per
  file) gains are sublinear: at 20 ms on the 2-core benchmark machine each doubling from 8
  to 32 brought 30-40 %, and 32 made 1.3-1.6 x the files of 16 at a lower CPU per file
  (fuller receives and deletes). Halving the promise stopped the climb at 16 there.
- *A step up that brings less than that but more than ``MIN_GAIN``* (5 %) is kept and the
  target holds there: the knee is between the last two levels.
- *A step up that brings less than ``MIN_GAIN``* is undone, and the target holds at the
  level below.
- *Holding*, the window's rate is compared with the level's (a slow average): if it falls by
  ``FALL`` (30 %) or more, the target steps down (x 3/4) to see whether fewer slots do as
  well (contention: a disk, the CPU, a throttled bucket). Not while large objects download
  (``Sample.large``): their ranges take the CPU and the link from the small lane, and fewer
  small slots would only make the small files wait longer; the fall becomes the level. A
  step down that loses less than ``MIN_GAIN`` is kept and the next goes further down; one
  that loses more is undone.
- After ``HOLD_SECONDS`` of holding, a small step up (x 5/4) probes again: the network or the
  load may have changed. Each probe undone doubles the wait for the next (up to 10 minutes),
  so a settled daemon logs a ``concurrency.changed`` pair a few times an hour at most.

**Stops.** No step up while the process uses ``CPU_BUSY`` (90 %) of the CPUs it may use, or
while the adapter names a resource that says stop (``Sample.hold``: memory near the cgroup's
limit, open files near ``RLIMIT_NOFILE``, the disk: a local failure pauses receiving). A
resource under pressure (``Sample.shrink``) steps the target down (x 3/4) at once, whatever
the window says. Always within ``[min_workers, max_workers]``.

**Fairness.** A large object holds its download thread for its whole download, but its speed
comes from the part threads (``large_objects.concurrency``, shared), not from slots. So large
objects run in their own lane of ``LARGE_SLOTS`` (fewer with a fixed ``workers`` below it),
besides the small lane, and a large message in hand takes a place of its own in the receive
capacity (``lease.Capacity.lend``): 4 x 1 GiB queued ahead of 2,000 x 4 KiB objects hold 4
lane slots, and the small files keep the whole small lane and its prefetch. The controller
sees only the small lane, so 4 slow large downloads are neither "no gain" nor "backlog".

**Shrinking never cancels a download**: a lower target only means fewer start (the pool's
cap, ``slots.Slots.resize``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from s3sqsd.config import AUTO_START_WORKERS
from s3sqsd.sqs import MAX_DELETE_BATCHES

# The target a daemon with ``workers: auto`` starts from (also what ``s3sqsd sync`` uses):
# the fixed default before ``auto`` existed. The large lane's slots: ``config.LARGE_SLOTS``.
START = AUTO_START_WORKERS
# One receiver thread per this many slots (at least the configured ``pollers``): a poller brings
# up to 10 messages per round trip to SQS, and a slot finishes a small file in about one round
# trip to S3 (a GET), so one poller keeps about 10 slots fed, whatever the round trip. One per
# 16 (until issue 17's second round) fell short at 100 ms: 8 slots were never all busy, and
# the target never grew. One per 8 keeps the receive ahead of the slots it feeds.
SLOTS_PER_POLLER = 8
# One DeleteMessageBatch in flight per this many slots: a batch deletes 10 messages per round
# trip, a slot finishes a small file in one or two, so one batch keeps up with about 10 slots.
SLOTS_PER_DELETE = 10

SAMPLE_SECONDS = 0.1  # how often the adapter samples (the loop's sweep interval)
MIN_WINDOW_SECONDS = 0.5
MAX_WINDOW_SECONDS = 10.0
MIN_WINDOW_COMPLETIONS = 8
SATURATED_SHARE = 0.5  # a window counts only if the slots were full in this share of samples
EFFICIENCY = 0.2  # a step up by x% is worth going on from if it brought x/5 %
MIN_GAIN = 0.05  # below this, a step up bought nothing (undone); a step down lost nothing
FALL = 0.3  # holding: a rate this far below the level's average probes downwards
LEVEL_AVERAGE = 0.2  # weight of a new window in the level's average rate
HOLD_SECONDS = 30.0  # before the first probe up; doubled by each probe undone, up to:
MAX_HOLD_SECONDS = 600.0
IDLE_RESET_SECONDS = 60.0
CPU_BUSY = 0.9
RAMP_FACTOR = 2.0
PROBE_FACTOR = 1.25
DOWN_FACTOR = 0.75


@dataclass(frozen=True, slots=True)
class Bounds:
    """The operator's ``min_workers`` and ``max_workers``, and where to start between them."""

    least: int
    most: int
    start: int = START

    def clamp(self, value: float) -> int:
        return max(self.least, min(self.most, int(value)))

    def first(self) -> int:
        return self.clamp(self.start)


@dataclass(frozen=True, slots=True)
class Sample:
    """What the adapter saw at ``now``: running totals of the small lane's finished downloads
    (``completed`` messages, ``bytes``), whether there was backlog (every slot busy, or
    the last receive full), the CPU the process used
    since the last sample as a share of the CPUs it may use (None: unknown), and a resource's
    name when one says stop (``hold``) or asks for fewer downloads (``shrink``)."""

    now: float
    completed: int
    bytes: int
    saturated: bool
    cpu: float | None = None
    hold: str | None = None
    shrink: str | None = None
    large: bool = False  # downloads of the large lane are running (see ``_judge``)


@dataclass(frozen=True, slots=True)
class Change:
    """A new target and why (the ``reason`` field of the ``concurrency.changed`` log line)."""

    target: int
    previous: int
    reason: str
    files_per_second: float = 0.0
    bytes_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class _Rate:
    level: int
    files: float  # per second
    bytes: float  # per second


class Controller:
    """The hill climber (the module docstring has the rules). Owned by one thread."""

    def __init__(self, bounds: Bounds, *, now: float) -> None:
        self.bounds = bounds
        self.target = bounds.first()
        self._ramping = True
        self._holding_since: float | None = None
        self._hold_seconds = HOLD_SECONDS
        self._level: _Rate | None = None  # the rate the current level is compared with
        self._last: _Rate | None = None  # the last window's, at the level before a move
        self._moved_up = False
        self._window_start = now
        self._window_count = 0
        self._window_bytes = 0
        self._skip = 0  # completions still to let go before the window opens
        self._samples = 0
        self._full = 0
        self._previous: Sample | None = None
        self._backlog_at = now
        self._cpu: list[float] = []
        self._stop: str | None = None  # the last window's reason not to grow, if any

    def rebound(self, bounds: Bounds) -> Change | None:
        """A reload changed ``min_workers`` or ``max_workers``: keep the target within them."""
        self.bounds = bounds
        wanted = bounds.clamp(self.target)
        return self._move(wanted, "bounds", now=None) if wanted != self.target else None

    def observe(self, sample: Sample) -> Change | None:
        previous, self._previous = self._previous, sample
        if previous is None:
            self._open(sample.now)
            return None
        done = max(0, sample.completed - previous.completed)
        moved = max(0, sample.bytes - previous.bytes)
        if sample.saturated:
            self._backlog_at = sample.now
        if self._skip > 0:  # settling after a change: these completions are not measured
            self._skip -= done
            if self._skip > 0 and sample.now - self._window_start < MAX_WINDOW_SECONDS:
                return None
            self._skip = 0
            self._open(sample.now)
            return None
        if sample.shrink is not None:
            wanted = self.bounds.clamp(math.floor(self.target * DOWN_FACTOR))
            if wanted < self.target:
                return self._move(wanted, sample.shrink, now=sample.now, hold=True)
        self._window_count += done
        self._window_bytes += moved
        self._samples += 1
        self._full += sample.saturated
        if sample.cpu is not None:
            self._cpu.append(sample.cpu)
        elapsed = sample.now - self._window_start
        enough = (
            self._window_count >= max(MIN_WINDOW_COMPLETIONS, 2 * self.target)
            and elapsed >= MIN_WINDOW_SECONDS
        )
        if not enough and elapsed < MAX_WINDOW_SECONDS:
            return None
        rate = _Rate(self.target, self._window_count / elapsed, self._window_bytes / elapsed)
        backlog = self._full >= SATURATED_SHARE * self._samples
        cpu = sum(self._cpu) / len(self._cpu) if self._cpu else 0.0
        self._open(sample.now)
        if not backlog:
            return self._idle(sample.now)
        self._stop = sample.hold or sample.shrink or ("cpu" if cpu >= CPU_BUSY else None)
        return self._judge(rate, sample)

    # ---- decisions ----------------------------------------------------------------------------

    def _idle(self, now: float) -> Change | None:
        """A window without backlog: nothing learned about more slots; after a long idle
        spell, back to the start."""
        self._last = None
        if now - self._backlog_at >= IDLE_RESET_SECONDS and self.target > self.bounds.first():
            change = self._move(self.bounds.first(), "idle", now=now)
            self._ramping = True
            self._holding_since = None
            self._hold_seconds = HOLD_SECONDS
            return change
        return None

    def _judge(self, rate: _Rate, sample: Sample) -> Change | None:
        last = self._last
        if last is not None and last.level != rate.level:
            return self._after_move(last, rate, sample)
        if self._holding_since is None:  # a baseline at this level: go on climbing
            self._level = rate
            return self._up(rate, sample, RAMP_FACTOR if self._ramping else PROBE_FACTOR)
        level = self._level or rate
        if _ratio(rate, level) <= 1 - FALL and sample.large:
            # Large objects share the CPU and the link with the small lane: its rate falls
            # while they download, and fewer small slots would only make the small files wait
            # longer (workload f walked 16 > 8 > 6 > 4 that way). Not contention among the
            # small slots: the level is this rate until the large downloads end.
            self._level = rate
            return None
        if _ratio(rate, level) <= 1 - FALL:
            self._last = rate
            self._holding_since = None
            self._ramping = False
            return self._down(sample.now, "throughput fell")
        self._level = _Rate(
            level.level,
            level.files + LEVEL_AVERAGE * (rate.files - level.files),
            level.bytes + LEVEL_AVERAGE * (rate.bytes - level.bytes),
        )
        if sample.now - self._holding_since >= self._hold_seconds:
            self._holding_since = None
            return self._up(rate, sample, PROBE_FACTOR)
        return None

    def _after_move(self, last: _Rate, rate: _Rate, sample: Sample) -> Change | None:
        """The first window at a new level, against the last one at the level before."""
        gain = _ratio(rate, last) - 1
        if rate.level > last.level:
            step = rate.level / last.level - 1
            if gain >= EFFICIENCY * step:
                self._hold_seconds = HOLD_SECONDS
                self._level = rate
                return self._up(rate, sample, RAMP_FACTOR if self._ramping else PROBE_FACTOR)
            self._ramping = False
            if gain >= MIN_GAIN:
                self._hold_seconds = HOLD_SECONDS
                return self._hold(rate, sample.now)
            if rate.level - last.level < last.level:  # a probe, not a doubling: probe less often
                self._hold_seconds = min(MAX_HOLD_SECONDS, 2 * self._hold_seconds)
            return self._revert(last, sample.now, f"no gain above {last.level}")
        if gain >= -MIN_GAIN:  # a step down that lost nothing: go on down
            self._level = rate
            self._last = rate
            return self._down(sample.now, "no loss below") or self._hold(rate, sample.now)
        return self._revert(last, sample.now, f"a loss below {last.level}")

    def _up(self, rate: _Rate, sample: Sample, factor: float) -> Change | None:
        if self._stop is not None:  # the CPU or a resource says stop
            return self._hold(rate, sample.now)
        wanted = self.bounds.clamp(max(self.target + 1, math.ceil(self.target * factor)))
        if wanted <= self.target:
            return self._hold(rate, sample.now)
        self._last = rate
        return self._move(wanted, "ramp" if self._ramping else "probe", now=sample.now)

    def _down(self, now: float, reason: str) -> Change | None:
        wanted = self.bounds.clamp(min(self.target - 1, math.floor(self.target * DOWN_FACTOR)))
        if wanted >= self.target:
            return None
        return self._move(wanted, reason, now=now)

    def _hold(self, rate: _Rate, now: float) -> Change | None:
        """Stay at this level (its rate the one later windows are compared with)."""
        self._level = rate
        self._last = None
        self._holding_since = now
        return None

    def _revert(self, last: _Rate, now: float, reason: str) -> Change | None:
        self._level = last
        self._last = None
        self._holding_since = now
        return self._move(self.bounds.clamp(last.level), reason, now=now)

    def _move(
        self, wanted: int, reason: str, *, now: float | None, hold: bool = False
    ) -> Change | None:
        if wanted == self.target:
            return None
        level = self._level
        change = Change(
            target=wanted,
            previous=self.target,
            reason=reason,
            files_per_second=level.files if level else 0.0,
            bytes_per_second=level.bytes if level else 0.0,
        )
        self.target = wanted
        if hold and now is not None:
            self._last = None
            self._ramping = False
            self._holding_since = now
        self._skip = max(1, wanted // 2)
        if now is not None:
            self._open(now)
        return change

    def _open(self, now: float) -> None:
        self._window_start = now
        self._window_count = 0
        self._window_bytes = 0
        self._samples = 0
        self._full = 0
        self._cpu = []


def _ratio(rate: _Rate, base: _Rate) -> float:
    """How much better ``rate`` is than ``base``: the larger of the files and bytes ratios."""
    ratios = [
        new / old for new, old in ((rate.files, base.files), (rate.bytes, base.bytes)) if old > 0
    ]
    if not ratios:
        return math.inf if rate.files > 0 or rate.bytes > 0 else 1.0
    return max(ratios)


def pollers_for(target: int, configured: int) -> int:
    """Receiver threads polling for ``target`` slots: at least the configured ``pollers``."""
    return max(configured, math.ceil(target / SLOTS_PER_POLLER))


def prefetch_for(target: int, pollers: int) -> int:
    """Messages in hand beyond the slots: up to 10 per active poller (one receive's worth
    each), never more than the slots themselves."""
    return min(target, 10 * pollers)


def deletes_for(target: int) -> int:
    """DeleteMessageBatch calls in flight at once for ``target`` slots: one per 10 of them,
    at least 1, at most ``MAX_DELETE_BATCHES`` (the control client's pool covers them)."""
    return max(1, min(MAX_DELETE_BATCHES, math.ceil(target / SLOTS_PER_DELETE)))
