"""Run the ``on_download`` command for one file: argument list, bounded in time and output.

``run_on_download`` starts the program without a shell, in its own session (so in its own
process group), with stdin from /dev/null and stdout+stderr captured through one pipe. It
raises nothing for a failing program: the caller turns a result that is not ``ok`` into a
``CommandError`` (transient: retried, then dead-lettered) and logs ``output`` tagged with the
object. It blocks only the calling thread (a download thread), polling at most every
``_POLL_SECONDS`` for ``cancel``.

Environment: the file's facts (``S3SQSD_*``, see ``object_facts``: where it is, which object,
and S3's metadata of it: LastModified, content type, ``x-amz-meta-*``) on top of a minimal copy
of the service's environment: ``PATH`` (a standard one if unset), ``HOME``, ``LANG``,
``LC_*``, ``TZ``. Nothing else is inherited, ``AWS_*`` above all: the daemon's credentials
may delete queue messages and read every object of the bucket, and a program run per file
should hold only what it is given. (``NOTIFY_SOCKET`` is not inherited either: a child must
never talk to systemd for the service.)

Ending: the command is over when its first process (the group leader) exits. Whatever it
left running in its process group is then stopped like a command that timed out: SIGTERM to
the group, SIGKILL after ``kill_grace_seconds`` if anything is still alive. The leader is
reaped only after that, so its pid, which is the group id, cannot be reused by another
process while the group is being signalled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from s3sqsd.config import CommandConfig
from s3sqsd.errors import CommandError, DownloadCancelledError
from s3sqsd.objectmeta import NO_META, ObjectMeta, iso_utc

FACT_PATH = "S3SQSD_PATH"
FACT_BUCKET = "S3SQSD_BUCKET"
FACT_KEY = "S3SQSD_KEY"
FACT_VERSION_ID = "S3SQSD_VERSION_ID"
FACT_SIZE = "S3SQSD_SIZE"
FACT_ETAG = "S3SQSD_ETAG"
FACT_MESSAGE_ID = "S3SQSD_MESSAGE_ID"
FACT_LAST_MODIFIED = "S3SQSD_LAST_MODIFIED"
FACT_CONTENT_TYPE = "S3SQSD_CONTENT_TYPE"
FACT_META_PREFIX = "S3SQSD_META_"
FACT_PREFIX = "S3SQSD_"

_NOT_NAME_CHAR = re.compile(r"[^A-Z0-9_]")

INHERITED_ENV = ("PATH", "HOME", "LANG", "TZ")  # and every LC_* variable
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MAX_OUTPUT_LINES = 100
MAX_OUTPUT_BYTES = 64 * 1024
MAX_LINE_BYTES = 4096  # a longer line keeps its start, marked with LINE_CUT_MARK
LINE_CUT_MARK = " [...]"
KILL_GRACE_SECONDS = 3.0

_POLL_SECONDS = 0.1  # how often ``cancel`` (and, without a pidfd, the exit) is checked
_DRAIN_SECONDS = 1.0  # output still arriving after the group is gone (an escaped process)
_REAP_SECONDS = 5.0  # a leader that survives SIGKILL (uninterruptible I/O) is not waited for
_READ_BYTES = 65536


def object_facts(
    *,
    path: Path,
    bucket: str,
    key: str,
    version_id: str | None,
    size: int,
    etag: str | None,
    message_id: str,
    meta: ObjectMeta = NO_META,
) -> dict[str, str]:
    """The ``S3SQSD_*`` variables for one downloaded file; unknown values are empty strings.

    From S3's metadata (``meta``): ``S3SQSD_LAST_MODIFIED`` (ISO 8601 UTC), ``S3SQSD_CONTENT_TYPE``
    and one ``S3SQSD_META_<NAME>`` per user metadata entry (``meta_variable``)."""
    facts = {
        FACT_PATH: str(path),
        FACT_BUCKET: bucket,
        FACT_KEY: key,
        FACT_VERSION_ID: version_id or "",
        FACT_SIZE: str(size),
        FACT_ETAG: (etag or "").strip('"'),
        FACT_MESSAGE_ID: message_id,
        FACT_LAST_MODIFIED: "" if meta.last_modified is None else iso_utc(meta.last_modified),
        FACT_CONTENT_TYPE: meta.content_type or "",
    }
    for name, value in sorted(meta.metadata):  # the first of a collision wins
        variable = meta_variable(name)
        if variable is not None and "\0" not in value:
            facts.setdefault(variable, value)
    return facts


def meta_variable(name: str) -> str | None:
    """The variable of a user metadata entry (pure): ``S3SQSD_META_`` and the name (the part
    after ``x-amz-meta-``) upper-cased, every character but A-Z, 0-9 and _ made ``_``:
    ``x-amz-meta-Owner-ID`` gives ``S3SQSD_META_OWNER_ID``. Names that differ only there
    (``a-b``, ``a.b``, ``a_b``) give one variable: the name that sorts first keeps it. None for
    an empty name."""
    if not name:
        return None
    return FACT_META_PREFIX + _NOT_NAME_CHAR.sub("_", name.upper())


def command_environment(
    facts: Mapping[str, str], *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The command's whole environment: the inherited minimum of ``base`` plus ``facts``."""
    source = os.environ if base is None else base
    env = {
        name: value
        for name, value in source.items()
        if name in INHERITED_ENV or name.startswith("LC_")
    }
    env.setdefault("PATH", DEFAULT_PATH)
    for name, value in facts.items():
        if not name.startswith(FACT_PREFIX):
            raise ValueError(f"fact {name!r} must be named {FACT_PREFIX}...")
        env[name] = value
    return env


@dataclass(frozen=True, slots=True)
class HookResult:
    """How one run went. ``ok`` only for exit status 0 within the timeout."""

    command: tuple[str, ...]
    timeout_seconds: float
    pid: int | None  # also the process group id; None when it never started
    returncode: int | None  # exit status; -N: killed by signal N; None: not started or lost
    timed_out: bool
    cancelled: bool  # stopped because ``cancel`` was set (the daemon is shutting down)
    error: str | None  # why it could not be started (or reaped)
    output: tuple[str, ...]  # stdout and stderr lines, capped; the last one notes a cut
    output_truncated: bool
    duration_ms: int

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0
            and not self.timed_out
            and not self.cancelled
            and self.error is None
        )

    def describe(self) -> str:
        """What happened, as the end of a sentence: 'exited with status 3'."""
        if self.error is not None:
            return self.error
        if self.cancelled:
            return "was stopped because s3sqsd is stopping"
        if self.timed_out:
            return f"timed out after {self.timeout_seconds:g} s and was stopped"
        code = self.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with status {code}"

    def as_error(self, url: str) -> CommandError | DownloadCancelledError:
        """The transient failure for a result that is not ``ok``; ``url`` names the object.
        A command stopped by the daemon's own stop is not a failure of the message."""
        text = f"on_download command {self.command[0]} for {url} {self.describe()}"
        if self.cancelled:
            return DownloadCancelledError(text)
        return CommandError(text)


def run_on_download(
    command: CommandConfig,
    *,
    facts: Mapping[str, str],
    cancel: threading.Event | None = None,
    kill_grace_seconds: float = KILL_GRACE_SECONDS,
) -> HookResult:
    """Run ``command`` with ``facts`` in its environment until it exits, times out or is
    cancelled; never raises for the program's own failures (see the module docstring)."""
    argv = tuple(command.command)
    env = command_environment(facts)
    started = time.monotonic()

    not_started = HookResult(
        command=argv,
        timeout_seconds=command.timeout_seconds,
        pid=None,
        returncode=None,
        timed_out=False,
        cancelled=False,
        error=None,
        output=(),
        output_truncated=False,
        duration_ms=0,
    )

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    if cancel is not None and cancel.is_set():
        return dataclasses.replace(not_started, cancelled=True)
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            bufsize=0,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.ENOEXEC:
            hint = " (a script needs a #! line)"
        return dataclasses.replace(
            not_started,
            error=f"could not be started: {argv[0]}: {reason}{hint}",
            duration_ms=elapsed(),
        )

    stdout = cast(IO[bytes], proc.stdout)  # stdout=PIPE
    output = _Output()
    pidfd = _pidfd(proc.pid)
    timed_out = cancelled = False
    try:
        reader = _Reader(stdout.fileno(), pidfd, output)
        deadline = started + command.timeout_seconds
        while not _exited(proc.pid):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            reader.wait(min(remaining, _POLL_SECONDS))
        # The leader has exited (still unreaped) or is to be stopped: stop the whole group.
        _stop_group(proc.pid, kill_grace_seconds)
        reader.drain(_DRAIN_SECONDS)
    finally:
        stdout.close()
        if pidfd is not None:
            os.close(pidfd)
    error = None
    try:
        returncode: int | None = proc.wait(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        returncode = None
        error = f"did not exit after SIGKILL within {_REAP_SECONDS:g} s (pid {proc.pid})"
    lines, truncated = output.finish()
    return dataclasses.replace(
        not_started,
        pid=proc.pid,
        returncode=returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        error=error,
        output=lines,
        output_truncated=truncated,
        duration_ms=elapsed(),
    )


# ---- the process group ------------------------------------------------------------------------


def _pidfd(pid: int) -> int | None:
    """A pidfd that becomes readable when ``pid`` exits; None where the kernel (or the unit's
    system call filter) has none, and exits are then polled."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited; it is left unreaped (a zombie)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` is alive (zombies, such as our unreaped leader
    or orphans not yet reaped by init, do not count)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        try:
            os.killpg(pgid, 0)
        except OSError:
            return False
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stream:
                stat = stream.read()
        except OSError:
            continue  # gone meanwhile, or not ours to see
        fields = stat.rpartition(b")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _stop_group(pgid: int, grace: float) -> None:
    """SIGTERM every live process of the group, SIGKILL what is left after ``grace``."""
    if not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        time.sleep(0.02)
        if not _group_alive(pgid):
            return
    _signal_group(pgid, signal.SIGKILL)
    end = time.monotonic() + 1.0
    while _group_alive(pgid) and time.monotonic() < end:
        time.sleep(0.01)


# ---- output ----------------------------------------------------------------------------------


class _Reader:
    """Waits on the output pipe (and the pidfd), feeding what arrives into ``_Output``."""

    def __init__(self, fd: int, pidfd: int | None, output: _Output) -> None:
        self._fd = fd
        self._pidfd = pidfd
        self._output = output
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)
        if pidfd is not None:
            self._poller.register(pidfd, select.POLLIN)
        self._eof = False

    def wait(self, seconds: float) -> None:
        """Read what arrives within ``seconds``; return early when the process exits."""
        if self._eof and self._pidfd is None:
            time.sleep(seconds)
            return
        for fd, _ in self._poller.poll(max(0, int(seconds * 1000))):
            if fd == self._fd:
                self._read()

    def drain(self, seconds: float) -> None:
        """Read the rest of the output until EOF, for at most ``seconds``."""
        if self._pidfd is not None:
            self._poller.unregister(self._pidfd)
            self._pidfd = None
        end = time.monotonic() + seconds
        while not self._eof:
            remaining = end - time.monotonic()
            if remaining <= 0:
                self._output.note_unread()
                return
            if self._poller.poll(max(1, int(remaining * 1000))):
                self._read()

    def _read(self) -> None:
        try:
            chunk = os.read(self._fd, _READ_BYTES)
        except BlockingIOError:
            return
        if chunk:
            self._output.feed(chunk)
        else:
            self._eof = True
            self._poller.unregister(self._fd)


class _Output:
    """Lines of output: the first MAX_OUTPUT_LINES / MAX_OUTPUT_BYTES are kept (a line longer
    than MAX_LINE_BYTES keeps its start); from the first line that does not fit on, the rest is
    only counted, in bulk, so a flood costs neither memory nor time per line."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._kept_bytes = 0
        self._dropped_lines = 0
        self._dropped_bytes = 0  # every byte not shown, newlines included
        self._partial = b""  # the start of the current line (at most MAX_LINE_BYTES)
        self._skipping = False  # inside the cut-off rest of a line already kept
        self._full = False  # nothing more is kept
        self._at_line_start = True  # once full: the next byte starts a new (dropped) line
        self._unread = False

    def feed(self, data: bytes) -> None:
        if self._full:
            self._drop(data)
            return
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self._dropped_bytes += len(data)
                return
            self._dropped_bytes += newline + 1
            data = data[newline + 1 :]
            self._skipping = False
        buffer = self._partial + data
        self._partial = b""
        start = 0
        while not self._full:
            newline = buffer.find(b"\n", start)
            if newline < 0:
                break
            line = buffer[start:newline]
            start = newline + 1
            if len(line) > MAX_LINE_BYTES:
                self._add(line[:MAX_LINE_BYTES], cut=True)
                self._dropped_bytes += len(line) - MAX_LINE_BYTES + 1
            else:
                self._add(line)
        rest = buffer[start:]
        if self._full:
            self._at_line_start = True
            self._drop(rest)
        elif len(rest) > MAX_LINE_BYTES:
            self._add(rest[:MAX_LINE_BYTES], cut=True)
            if self._full:
                self._at_line_start = False  # this line is counted; its rest is bytes only
                self._drop(rest[MAX_LINE_BYTES:])
            else:
                self._dropped_bytes += len(rest) - MAX_LINE_BYTES
                self._skipping = True
        else:
            self._partial = rest

    def note_unread(self) -> None:
        """Output was still open after the group was stopped (a process left the group)."""
        self._unread = True

    def finish(self) -> tuple[tuple[str, ...], bool]:
        if self._partial and not self._full:
            self._add(self._partial)
            self._partial = b""
        lines = list(self._lines)
        truncated = bool(self._dropped_lines or self._dropped_bytes or self._unread)
        if self._dropped_lines or self._dropped_bytes:
            lines.append(
                f"[output truncated: {self._dropped_lines} more lines, {self._dropped_bytes} "
                "bytes not shown]"
            )
        if self._unread:
            lines.append("[output not read to its end: a process outside the group kept it open]")
        return tuple(lines), truncated

    def _add(self, line: bytes, *, cut: bool = False) -> None:
        size = len(line) + 1
        if len(self._lines) >= MAX_OUTPUT_LINES or self._kept_bytes + size > MAX_OUTPUT_BYTES:
            self._full = True
            self._dropped_lines += 1
            self._dropped_bytes += len(line) if cut else size  # a cut line's rest comes later
            return
        self._kept_bytes += size
        text = line.decode("utf-8", errors="replace").removesuffix("\r")
        self._lines.append(text + LINE_CUT_MARK if cut else text)

    def _drop(self, data: bytes) -> None:
        """Count ``data`` once nothing more is kept: its bytes, and the lines it starts."""
        if not data:
            return
        self._dropped_bytes += len(data)
        self._dropped_lines += data.count(b"\n", 0, len(data) - 1) + self._at_line_start
        self._at_line_start = data.endswith(b"\n")
