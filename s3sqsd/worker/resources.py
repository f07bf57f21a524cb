"""What the host lets this process use, for ``workers: auto``: CPUs, open files, memory.

Read by the tuner on the loop thread, the cheap parts often (the process's CPU time: one
``os.times``), the rest at most once a second (a listing of ``/proc/self/fd``, two cgroup
files). Anything that cannot be read is unknown, and an unknown limit never stops the
controller. ``verdict`` (pure) turns the readings into a reason to hold or to shrink.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

# File descriptors one more download may hold: its S3 connection, the temp file, the directory
# it is renamed in, the folder lock's; a ranged download's part connections are the part
# threads', counted once.
FDS_PER_SLOT = 4
HOLD_SHARE = 0.8  # of a limit: no more downloads
SHRINK_SHARE = 0.9  # of a limit: fewer downloads

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class Reading:
    """Open files and their soft limit, memory used and the cgroup's limit (None: unknown)."""

    open_files: int | None = None
    max_files: int | None = None
    memory: int | None = None
    max_memory: int | None = None


def verdict(reading: Reading, *, target: int) -> tuple[str | None, str | None]:
    """(hold, shrink): the name of a resource that says no more downloads, or fewer."""
    hold = shrink = None
    if reading.open_files is not None and reading.max_files:
        if reading.open_files >= SHRINK_SHARE * reading.max_files:
            shrink = "open files"
        elif reading.open_files + FDS_PER_SLOT * target >= HOLD_SHARE * reading.max_files:
            hold = "open files"  # the next step (at most a doubling) would come too close
    if reading.memory is not None and reading.max_memory:
        if reading.memory >= SHRINK_SHARE * reading.max_memory:
            shrink = shrink or "memory"
        elif reading.memory >= HOLD_SHARE * reading.max_memory:
            hold = hold or "memory"
    return hold, shrink


class Resources:
    """The readings of this process (Linux; elsewhere mostly unknown)."""

    def __init__(self, *, cgroup_root: Path = _CGROUP_ROOT, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._cgroup = _own_cgroup(cgroup_root, proc)
        self.cpus = available_cpus(self._cgroup)

    @staticmethod
    def cpu_seconds() -> float:
        """The process's CPU time so far (user and system, every thread)."""
        times = os.times()
        return times.user + times.system

    def read(self) -> Reading:
        open_files = max_files = memory = max_memory = None
        with contextlib.suppress(OSError):
            open_files = len(os.listdir(self._proc / "self" / "fd"))
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            max_files = soft
        if self._cgroup is not None:
            memory = _read_int(self._cgroup / "memory.current")
            max_memory = _read_int(self._cgroup / "memory.max")
        return Reading(open_files, max_files, memory, max_memory)


def available_cpus(cgroup: Path | None) -> float:
    """The CPUs this process may use: its affinity, lowered by the cgroup's ``cpu.max``
    quota (systemd's ``CPUQuota=``) when there is one."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    if cgroup is not None:
        try:
            quota, period = (cgroup / "cpu.max").read_text().split()[:2]
            if quota != "max" and int(period) > 0:
                cpus = min(cpus, max(0.1, int(quota) / int(period)))
        except (OSError, ValueError):
            pass
    return cpus


def _own_cgroup(root: Path, proc: Path) -> Path | None:
    """This process's cgroup v2 directory, or None (v1, no /proc, not Linux)."""
    try:
        for line in (proc / "self" / "cgroup").read_text().splitlines():
            if line.startswith("0::"):
                path = root / line[3:].lstrip("/")
                return path if path.is_dir() else None
    except OSError:
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
