"""The benchmark's moving parts: the delay-proxy process, the three contestants as processes,
/proc sampling, an inotify watcher that timestamps files as they appear, and what every
benchmark reports (the machine, number formatting) and cleans up (scratch folders). The emulator
process is the test suite's (``tests.support.emulator_server.EmulatorProcess``).

Everything here talks to 127.0.0.1 only. Every wait has a deadline; every process started here
is stopped by whoever started it (``stop``/``cleanup`` in ``finally`` blocks in ``run.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import platform
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.daemon import REPO_ROOT, DaemonProcess, daemon_env
from tests.support.emulator import REGION
from tests.support.emulator_server import LineProcess
from tests.support.notify import NotifySocket

BENCH_DIR = Path(__file__).resolve().parent

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- /proc ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_seconds: float  # user + system, all threads
    sys_seconds: float  # the system (kernel) part
    rss_kib: int
    hwm_kib: int  # peak resident set (VmHWM)


def proc_sample(pid: int) -> ProcSample:
    at = time.monotonic()
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    kernel = int(fields[12]) / CLOCK_TICKS
    rss = hwm = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return ProcSample(at=at, cpu_seconds=cpu, sys_seconds=kernel, rss_kib=rss, hwm_kib=hwm)


def cpu_seconds_precise(pid: int) -> float:
    """On-CPU time of every live thread of ``pid`` in ns resolution (``schedstat``): for idle
    processes, where the 10 ms ticks of ``/proc/PID/stat`` are too coarse. Threads that exited
    are not counted, so use it only where none do."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as handle:
            total += int(handle.read().split()[0])
    return total / 1e9


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


# ---- folders and the report -----------------------------------------------------------------

# A run's folder with more files than this is left for the end of the benchmark: on ext4 without
# a journal (this VM's disk) creating a file skips every inode freed in the last minutes
# (``find_inode_bit`` -> ``recently_deleted`` under perf), so removing one contestant's 2,000
# files just before the next one starts made the next one pay for them (0.76 ms of kernel time
# per file in ``openat`` in one run measured), whoever it was.
REMOVE_AT_ONCE_MAX_FILES = 100


def remove_unless_many(folder: Path) -> bool:
    """Remove ``folder`` if it holds at most ``REMOVE_AT_ONCE_MAX_FILES`` entries; True if it
    did. The rest is removed with the workdir, after every measurement."""
    for count, _ in enumerate(folder.rglob("*"), start=1):
        if count > REMOVE_AT_ONCE_MAX_FILES:
            return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def machine() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    versions = {}
    for module in ("boto3", "botocore", "s3transfer", "moto", "urllib3"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "s3sqsd"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    return {
        "s3sqsd_uncommitted": [line.strip() for line in dirty if line.strip()],
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "git": rev,
        "load_average_start": loadavg(),
    }


def config_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--s3sqsd-config KEY=VALUE`` items as a config dict (each VALUE read as YAML); raises
    ValueError naming an item without ``=``."""
    extra: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--s3sqsd-config {item!r}: expected KEY=VALUE")
        extra[key.strip()] = yaml.safe_load(value)
    return extra


def print_report(
    path: Path, report: Mapping[str, Any], table: str, notes: Iterable[str] = ()
) -> None:
    """Write ``report`` (with ``machine``, ``targets``) as JSON to ``path``; print ``table``,
    the ``notes``, each target met or missed, and the machine with its load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(table)
    print()
    for note in notes:
        print(f"- {note}")
    for check in report["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[check["met"]]
        print(f"- {mark}: {check['target']}: {check['detail']}")
    print()
    info = report["machine"]
    print(
        f"nproc {info['nproc']}, {info['memory_gib']} GiB, load average "
        f"{info['load_average_start']} -> {info['load_average_end']}, "
        f"{info['duration_s']} s; JSON: {path}"
    )


# ---- helper processes -----------------------------------------------------------------------


class DelayProxy(LineProcess):
    """``bench/delay_proxy.py``: adds ``delay_ms`` each way between clients and the emulator."""

    def __init__(self, target_url: str, delay_ms: float) -> None:
        target = target_url.split("//", 1)[1]
        super().__init__(
            [
                sys.executable,
                str(BENCH_DIR / "delay_proxy.py"),
                "--target",
                target,
                "--delay-ms",
                str(delay_ms),
            ]
        )
        self.url: str = self.hello["url"]


# ---- inotify --------------------------------------------------------------------------------

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
_EVENT = struct.Struct("iIII")


class FileWatcher:
    """Timestamps (time.monotonic) the first appearance of each expected name in ``folder``.

    A file counts when it is closed after writing (``IN_CLOSE_WRITE``: written in place) or
    renamed into the folder (``IN_MOVED_TO``: written elsewhere, then renamed), whichever comes
    first; temp names are ignored because only ``expected`` names count. Not recursive: the
    benchmark's keys have no ``/``.
    """

    def __init__(self, folder: Path, expected: Iterable[str]) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self._fd, os.fsencode(folder), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
        self.expected = set(expected)
        self.seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="inotify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            now = time.monotonic()
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                continue
            offset = 0
            names = []
            while offset < len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                names.append(data[offset : offset + length].rstrip(b"\0").decode())
                offset += length
            with self._cond:
                for name in names:
                    if name in self.expected and name not in self.seen:
                        self.seen[name] = now
                self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self.seen)

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.seen) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self._fd)


# ---- contestants ----------------------------------------------------------------------------


class Contestant:
    """One consumer process under test: started, watched until ready, sampled, stopped."""

    def __init__(
        self,
        kind: str,
        *,
        endpoint: str,
        queue_url: str,
        bucket: str,
        folder: Path,
        workdir: Path,
        workers: int,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.notify: NotifySocket | None = None
        name = f"{kind}-{time.monotonic_ns()}"
        if kind == "s3sqsd":
            self.notify = NotifySocket()
            config: dict[str, Any] = {
                "sqs_queue_url": queue_url,
                "download_folder": folder,
                "aws_region": REGION,
                "endpoint_url": endpoint,
                "workers": workers,
                **(extra_config or {}),
            }
            self.process = DaemonProcess(
                config, workdir=workdir, notify_socket=self.notify.env_value, name=name
            )
        elif kind == "original":
            config = {
                "aws_region": REGION,
                "sqs_queue_url": queue_url,
                "download_folder": folder,
                "s3_bucket_name": bucket,
            }
            self.process = DaemonProcess(
                config,
                workdir=workdir,
                name=name,
                command=[
                    sys.executable,
                    str(BENCH_DIR / "original.py"),
                    "--config",
                    str(workdir / f"{name}.yaml"),
                ],
                env={"AWS_ENDPOINT_URL": endpoint},
            )
        elif kind == "limit":
            self.process = DaemonProcess(
                {},
                workdir=workdir,
                name=name,
                command=[
                    sys.executable,
                    str(BENCH_DIR / "limit.py"),
                    "--queue-url",
                    queue_url,
                    "--folder",
                    str(folder),
                    "--endpoint",
                    endpoint,
                    "--workers",
                    str(workers),
                    # the floor gets s3sqsd's pollers too (``--s3sqsd-config pollers=N``)
                    "--pollers",
                    str((extra_config or {}).get("pollers", 1)),
                ],
            )
        else:
            raise ValueError(f"unknown contestant {kind!r}")
        self.ready_seconds: float | None = None
        self.ready_at = 0.0
        self.profile: Path | None = None
        self._profiler: subprocess.Popen[bytes] | None = None
        self.exit_seconds: float | None = None
        self.exit_status: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 60) -> ProcSample:
        """Start and wait until ready; returns the /proc sample taken at that moment."""
        self.process.start()
        if self.notify is not None:
            at = self._wait_notify("READY=1", timeout)
        else:
            record = self.process.wait_for_event("ready", timeout=timeout)
            at = float(record["_t"])
        self.ready_at = at
        self.ready_seconds = at - self.process.started_at
        sample = proc_sample(self.pid)
        if self.profile is not None:
            self._start_profiler(self.profile)
        return sample

    def _start_profiler(self, output: Path) -> None:
        """py-spy, sampling without pausing the process, collapsed stacks to ``output``.

        ``--gil``: only the thread holding the GIL is sampled, so the profile shows where the
        Python-level CPU goes (C work that releases the GIL, hashing and syscalls, is not in it).
        """
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self._profiler = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                "250",
                "--nonblocking",
                "--gil",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2)  # let it attach (the figures of a profiled run are not for comparing)

    def _wait_notify(self, field: str, timeout: float) -> float:
        assert self.notify is not None
        deadline = time.monotonic() + timeout
        while True:
            times = self.notify.times(field)
            if times:
                return times[0]
            if self.process.proc is not None and self.process.proc.poll() is not None:
                raise RuntimeError(f"s3sqsd exited before {field}\n{self.process.describe()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {field} within {timeout}s\n{self.process.describe()}")
            time.sleep(0.002)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM and time the exit."""
        proc = self.process.proc
        if proc is None or proc.poll() is not None:
            return
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            self.exit_status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.exit_status = None
        else:
            self.exit_seconds = time.monotonic() - started

    def cleanup(self) -> None:
        self.process.cleanup()
        if self._profiler is not None:
            try:
                self._profiler.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._profiler.terminate()
                self._profiler.wait(timeout=10)
        if self.notify is not None:
            self.notify.close()

    def problems(self) -> list[str]:
        return self.process.problems() + [str(r.get("error")) for r in self.process.events("error")]

    def said(self, text: str) -> int:
        """How many lines of the process's output (JSON log records, other stdout lines,
        stderr) contain ``text``: s3sqsd logs its libraries' warnings as JSON records, the
        other contestants leave them to Python's last-resort handler on stderr."""
        return count_lines(
            [json.dumps(r) for r in self.process.events()],
            self.process.non_json,
            self.process.stderr.splitlines(),
            text=text,
        )


# What urllib3 logs (WARNING, ``urllib3.connectionpool``) when it closes a connection it could
# have kept because its pool for that host already holds ``maxsize`` idle ones: the next request
# pays a new TCP (and, on AWS, TLS) connection.
POOL_FULL = "Connection pool is full, discarding connection"


def count_lines(*sources: Iterable[str], text: str) -> int:
    return sum(text in line for source in sources for line in source)


def environment_for_tools() -> dict[str, str]:
    """The environment the helper tools (transfer.py) run with: test credentials only."""
    return daemon_env()
