"""A throwaway Debian 12 machine with a real systemd, for the system tests.

- ``ensure_rootfs()`` builds a minimal bookworm root file system with ``mmdebstrap`` (systemd,
  dbus, python3 and s3sqsd's runtime dependencies) once and caches it under
  ``/var/cache/s3sqsd-test/``, keyed by a hash of everything that goes into it.
- ``Container`` boots it with ``systemd-nspawn --boot --volatile=overlay``: every container
  starts from the pristine cached tree and its writes vanish at power-off. It shares the host's
  network, so the daemon inside reaches the emulator on 127.0.0.1. Commands run inside through
  ``nsenter`` into the namespaces of the container's PID 1.

Nothing here imports s3sqsd or needs the emulator; conftest.py wires it into fixtures.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE_DIR = Path(os.environ.get("S3SQSD_TEST_CACHE", "/var/cache/s3sqsd-test"))
SUITE = "bookworm"
# The runtime dependencies of the package (debian/control Depends) plus what the tests use:
# man-db lets `systemd-analyze verify` check the unit's Documentation= man pages.
PACKAGES = (
    "systemd",
    "dbus",
    "python3",
    "python3-boto3",
    "python3-yaml",
    "python3-sdnotify",
    "python3-pythonjsonlogger",
    # debian/control Recommends it (metrics.listen); apt installs Recommends by default.
    "python3-prometheus-client",
    "adduser",
    "procps",
    "man-db",
)
# Bump to force a rebuild when the recipe below changes in a way the key does not capture.
RECIPE_VERSION = "1"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 60.0
POWEROFF_TIMEOUT = 30.0


class MachineError(RuntimeError):
    """The container could not be built, booted or driven."""


def rootfs_key() -> str:
    text = "\n".join((RECIPE_VERSION, SUITE, "minbase", *sorted(PACKAGES)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_rootfs(*, log: Path) -> Path:
    """The cached root file system, built first if needed (about 40 s, needs the Debian mirror)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = CACHE_DIR / f"rootfs-{SUITE}-{rootfs_key()}"
    with _locked(CACHE_DIR / ".lock"):
        if (target / "usr/lib/systemd/systemd").exists():
            return target
        partial = CACHE_DIR / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(partial),
        ]
        with log.open("ab") as out:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_system_env(),
                timeout=900,
                check=False,
            )
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise MachineError(f"mmdebstrap failed with status {result.returncode}; see {log}")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        _prune_old_rootfs(keep=target)
        return target


def _prune_old_rootfs(*, keep: Path) -> None:
    for old in CACHE_DIR.glob(f"rootfs-{SUITE}-*"):
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _system_env() -> dict[str, str]:
    """A clean environment with Debian's tools first (not pyenv's or a virtualenv's)."""
    return {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": "/root"}


class Container:
    """One booted container. Use as a context manager; ``stop()`` always leaves nothing behind."""

    def __init__(self, rootfs: Path, *, name: str, binds_ro: dict[Path, str], log: Path) -> None:
        self.rootfs = rootfs
        self.name = name
        self.binds_ro = binds_ro
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        command = [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            f"--machine={self.name}",
            "--console=passive",
            "-D",
            str(self.rootfs),
        ]
        command += [f"--bind-ro={host}:{inside}" for host, inside in self.binds_ro.items()]
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_system_env(),
                start_new_session=True,
            )
        try:
            self.leader = self._wait_for_leader()
            self._wait_until_booted()
        except BaseException:
            self.stop()
            raise

    def _wait_for_leader(self) -> int:
        """Host PID of the container's init: a descendant of nspawn that is PID 1 inside."""
        assert self._process is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MachineError(
                    f"systemd-nspawn exited with status {self._process.returncode}; see {self.log}"
                )
            leader = _find_leader(self._process.pid)
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise MachineError(f"container init did not appear within {BOOT_TIMEOUT}s")

    def _wait_until_booted(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            result = self.run("systemctl", "is-system-running", check=False, timeout=10)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise MachineError(f"container did not finish booting (state {state!r})")

    def stop(self) -> None:
        """Power off cleanly (SIGTERM to nspawn), then make sure nothing is left running."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=POWEROFF_TIMEOUT)
            except subprocess.TimeoutExpired:
                if self.leader is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)  # kills the whole PID namespace
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=POWEROFF_TIMEOUT)
        self._process = None
        self.leader = None

    # ---- running things inside ---------------------------------------------------------------

    def run(
        self,
        *command: str,
        check: bool = True,
        input: str | bytes | None = None,
        timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the container as root with a clean environment; text output."""
        if self.leader is None:
            raise MachineError("container is not running")
        inner_env = [f"{k}={v}" for k, v in {**_system_env(), **(env or {})}.items()]
        full = ["nsenter", "-t", str(self.leader), "-a", "env", "-i", *inner_env, *command]
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            full,
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        completed = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise MachineError(
                f"{' '.join(command)!r} exited with {completed.returncode}\n"
                f"stdout: {completed.stdout[-3000:]}\nstderr: {completed.stderr[-3000:]}"
            )
        return completed

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, **kwargs)  # type: ignore[arg-type]

    def write(self, path: str, content: str | bytes, *, mode: str | None = None) -> None:
        """Write a file inside; an existing file keeps its owner and mode unless ``mode``."""
        self.run("mkdir", "-p", os.path.dirname(path))
        self.run("sh", "-c", 'cat > "$1"', "sh", path, input=content)
        if mode is not None:
            self.run("chmod", mode, path)

    def read(self, path: str) -> bytes:
        if self.leader is None:
            raise MachineError("container is not running")
        # The container's mount namespace, seen from the host.
        return (Path(f"/proc/{self.leader}/root") / path.lstrip("/")).read_bytes()

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show`` properties as a dict."""
        args = [f"--property={name}" for name in properties]
        out = self.run("systemctl", "show", *args, unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _find_leader(nspawn_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        nspids = fields.get("NSpid", "").split()
        if len(nspids) >= 2 and nspids[-1] == "1" and _descends_from(int(entry.name), nspawn_pid):
            return int(entry.name)
    return None


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(16):
        if pid == ancestor:
            return True
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        ppid = next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0
        )
        if ppid <= 1:
            return False
        pid = ppid
    return False


def missing_tools(tools: Sequence[str]) -> list[str]:
    return [tool for tool in tools if shutil.which(tool, path=SYSTEM_PATH) is None]
