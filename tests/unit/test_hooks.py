"""The on_download runner with real programs: exit status, timeout and process-group cleanup,
environment, output capture and its caps, programs that cannot start, cancellation."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from s3sqsd import hooks
from s3sqsd.config import CommandConfig
from s3sqsd.errors import CommandError, TransientError
from s3sqsd.hooks import (
    DEFAULT_PATH,
    MAX_LINE_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_OUTPUT_LINES,
    HookResult,
    command_environment,
    meta_variable,
    object_facts,
    run_on_download,
)
from s3sqsd.objectmeta import ObjectMeta

FACTS = object_facts(
    path=Path("/srv/in/reports/q1.pdf"),
    bucket="acme-inbox",
    key="reports/q1.pdf",
    version_id="3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
    size=1234,
    etag='"d41d8cd98f00b204e9800998ecf8427e"',
    message_id="0f1e2d3c-0000-4000-8000-000000000001",
)


def script(tmp_path: Path, body: str, name: str = "hook.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def run(program: Path | str, *args: str, timeout: float = 10.0, **kwargs: object) -> HookResult:
    command = CommandConfig((str(program), *args), timeout)
    return run_on_download(command, facts=kwargs.pop("facts", FACTS), **kwargs)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat.rpartition(b")")[2].split()[0] not in (b"Z", b"X")


def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.01)
    raise AssertionError(f"{path} was not written")


class TestExitStatus:
    def test_exit_0_is_ok(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "echo done\n"))
        assert result.ok
        assert (result.returncode, result.timed_out, result.cancelled, result.error) == (
            0,
            False,
            False,
            None,
        )
        assert result.output == ("done",)
        assert result.describe() == "exited with status 0"
        assert result.pid is not None
        assert not alive(result.pid)
        assert 0 <= result.duration_ms < 5000

    def test_exit_3_is_a_transient_failure(self, tmp_path: Path) -> None:
        program = script(tmp_path, "echo 'cannot index' >&2\nexit 3\n")
        result = run(program)
        assert not result.ok
        assert result.returncode == 3
        assert result.output == ("cannot index",)
        assert result.describe() == "exited with status 3"
        error = result.as_error("s3://acme-inbox/reports/q1.pdf")
        assert isinstance(error, CommandError)
        assert isinstance(error, TransientError)
        assert error.reason == "command_failed"
        assert str(error) == (
            f"on_download command {program} for s3://acme-inbox/reports/q1.pdf exited with status 3"
        )

    def test_killed_by_a_signal(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "kill -USR1 $$\nsleep 5\n"))
        assert result.returncode == -10
        assert result.describe() == "was killed by SIGUSR1"
        assert not result.ok

    def test_arguments_are_passed_as_they_are_without_a_shell(self, tmp_path: Path) -> None:
        program = script(tmp_path, 'for a in "$@"; do echo "[$a]"; done\n')
        result = run(program, "$HOME", "a b", "*", "; rm -rf /", "")
        assert result.output == ("[$HOME]", "[a b]", "[*]", "[; rm -rf /]", "[]")

    def test_stdin_is_empty(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "cat\necho end\n"), timeout=5)
        assert result.ok
        assert result.output == ("end",)


class TestTimeout:
    def test_the_whole_process_group_is_stopped(self, tmp_path: Path) -> None:
        pidfile = tmp_path / "child.pid"
        program = script(tmp_path, f"sleep 60 &\necho $! > {pidfile}\necho started\nsleep 60\n")
        started = time.monotonic()
        result = run(program, timeout=1)
        took = time.monotonic() - started
        assert result.timed_out
        assert not result.ok
        assert result.returncode == -15  # SIGTERM was enough
        assert result.describe() == "timed out after 1 s and was stopped"
        assert result.output == ("started",)
        assert 1.0 <= took < 4.0
        assert result.pid is not None
        assert not alive(result.pid)
        assert not alive(int(pidfile.read_text()))

    def test_sigkill_after_the_grace_for_what_ignores_sigterm(self, tmp_path: Path) -> None:
        pidfile = tmp_path / "child.pid"
        program = script(
            tmp_path,
            f"trap '' TERM\n(trap '' TERM; sleep 60) &\necho $! > {pidfile}\nsleep 60\n",
        )
        started = time.monotonic()
        result = run(program, timeout=1, kill_grace_seconds=0.5)
        took = time.monotonic() - started
        assert result.timed_out
        assert result.returncode == -9
        assert 1.5 <= took < 4.5
        assert result.pid is not None
        assert not alive(result.pid)
        assert not alive(int(pidfile.read_text()))

    def test_processes_left_behind_after_a_normal_exit_are_stopped(self, tmp_path: Path) -> None:
        pidfile = tmp_path / "child.pid"
        # The leftover keeps the output pipe open: the run must not wait for it.
        program = script(tmp_path, f"sleep 60 &\necho $! > {pidfile}\necho bye\nexit 0\n")
        started = time.monotonic()
        result = run(program, timeout=30)
        assert time.monotonic() - started < 3.0
        assert result.ok
        assert result.output == ("bye",)
        assert not alive(int(pidfile.read_text()))

    def test_without_pidfd_exits_are_polled(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(hooks, "_pidfd", lambda pid: None)
        assert run(script(tmp_path, "echo a\nexit 4\n", name="a.sh")).returncode == 4
        result = run(script(tmp_path, "sleep 60\n", name="b.sh"), timeout=1)
        assert result.timed_out
        assert result.pid is not None
        assert not alive(result.pid)


class TestCancel:
    def test_cancel_stops_a_running_command(self, tmp_path: Path) -> None:
        pidfile = tmp_path / "pid"
        program = script(tmp_path, f"echo $$ > {pidfile}\nsleep 60\n")
        cancel = threading.Event()
        box: list[HookResult] = []
        thread = threading.Thread(target=lambda: box.append(run(program, cancel=cancel)))
        thread.start()
        pid = int(wait_for_file(pidfile))
        cancel.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
        (result,) = box
        assert result.cancelled
        assert not result.timed_out
        assert not result.ok
        assert result.describe() == "was stopped because s3sqsd is stopping"
        assert not alive(pid)

    def test_cancelled_before_the_start_runs_nothing(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"
        cancel = threading.Event()
        cancel.set()
        result = run(script(tmp_path, f"touch {marker}\n"), cancel=cancel)
        assert result.cancelled
        assert result.pid is None
        assert not marker.exists()

    def test_runs_in_parallel_threads_do_not_wait_for_each_other(self, tmp_path: Path) -> None:
        program = script(tmp_path, "sleep 1\n")
        results: list[HookResult] = []
        threads = [threading.Thread(target=lambda: results.append(run(program))) for _ in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert time.monotonic() - started < 2.5
        assert [r.ok for r in results] == [True] * 4


class TestEnvironment:
    def test_facts_and_the_inherited_minimum_only(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACANARY")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
        monkeypatch.setenv("AWS_PROFILE", "canary")
        monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
        monkeypatch.setenv("S3SQSD_CONFIG", "/etc/s3sqsd/other.yaml")
        monkeypatch.setenv("SOMETHING_ELSE", "x")
        monkeypatch.setenv("LANG", "C.UTF-8")
        monkeypatch.setenv("LC_TIME", "en_GB.UTF-8")
        monkeypatch.setenv("TZ", "Europe/Paris")
        monkeypatch.setenv("HOME", "/var/lib/s3sqsd")
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
        result = run(script(tmp_path, "env\n"))
        assert result.ok
        env = dict(line.split("=", 1) for line in result.output)
        env.pop("PWD", None)  # set by the shell itself
        env.pop("SHLVL", None)
        env.pop("_", None)
        assert env == {
            "S3SQSD_PATH": "/srv/in/reports/q1.pdf",
            "S3SQSD_BUCKET": "acme-inbox",
            "S3SQSD_KEY": "reports/q1.pdf",
            "S3SQSD_VERSION_ID": "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
            "S3SQSD_SIZE": "1234",
            "S3SQSD_ETAG": "d41d8cd98f00b204e9800998ecf8427e",
            "S3SQSD_MESSAGE_ID": "0f1e2d3c-0000-4000-8000-000000000001",
            "S3SQSD_LAST_MODIFIED": "",
            "S3SQSD_CONTENT_TYPE": "",
            "LANG": "C.UTF-8",
            "LC_TIME": "en_GB.UTF-8",
            "TZ": "Europe/Paris",
            "HOME": "/var/lib/s3sqsd",
            "PATH": "/usr/bin:/bin",
        }

    def test_s3_metadata_becomes_variables_with_sanitised_names(self) -> None:
        meta = ObjectMeta(
            last_modified=1714557600,
            content_type="text/csv; charset=utf-8",
            metadata=(("a.b", "dot"), ("a-b", "dash"), ("owner-id", "42"), ("\u00e9t\u00e9", "x")),
        )
        facts = object_facts(
            path=Path("/srv/in/a.csv"),
            bucket="b",
            key="a.csv",
            version_id=None,
            size=1,
            etag=None,
            message_id="m",
            meta=meta,
        )
        assert facts["S3SQSD_LAST_MODIFIED"] == "2024-05-01T10:00:00Z"
        assert facts["S3SQSD_CONTENT_TYPE"] == "text/csv; charset=utf-8"
        assert facts["S3SQSD_META_OWNER_ID"] == "42"
        # "a-b" sorts before "a.b": it keeps the variable both names give.
        assert facts["S3SQSD_META_A_B"] == "dash"
        assert facts["S3SQSD_META__T_"] == "x"  # "été": each non-ASCII letter is one "_"
        assert meta_variable("") is None

    def test_unicode_key_and_missing_values(self, tmp_path: Path) -> None:
        facts = object_facts(
            path=Path("/srv/in/na\u00efve caf\u00e9.txt"),
            bucket="b",
            key="na\u00efve caf\u00e9.txt",
            version_id=None,
            size=0,
            etag=None,
            message_id="m",
        )
        result = run(
            script(
                tmp_path, 'printf "%s|%s|%s\\n" "$S3SQSD_KEY" "$S3SQSD_VERSION_ID" "$S3SQSD_ETAG"\n'
            ),
            facts=facts,
        )
        assert result.output == ("na\u00efve caf\u00e9.txt||",)

    def test_a_standard_path_when_the_service_has_none(self) -> None:
        env = command_environment({"S3SQSD_KEY": "k"}, base={"AWS_REGION": "x", "HOME": "/h"})
        assert env == {"PATH": DEFAULT_PATH, "HOME": "/h", "S3SQSD_KEY": "k"}

    def test_facts_must_be_s3sqsd_variables(self) -> None:
        with pytest.raises(ValueError, match="S3SQSD_"):
            command_environment({"LD_PRELOAD": "/tmp/evil.so"}, base={})


class TestOutput:
    def test_stdout_and_stderr_in_order(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "echo one\necho two >&2\necho three\n"))
        assert result.output == ("one", "two", "three")
        assert not result.output_truncated

    def test_crlf_invalid_utf8_and_a_last_line_without_newline(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "printf 'dos\\r\\nbad \\377 byte\\nlast'\n"))
        assert result.output == ("dos", "bad \ufffd byte", "last")

    def test_no_output(self, tmp_path: Path) -> None:
        assert run(script(tmp_path, "exit 0\n")).output == ()

    def test_line_cap(self, tmp_path: Path) -> None:
        result = run(
            script(tmp_path, "i=0\nwhile [ $i -lt 250 ]; do echo line$i; i=$((i+1)); done\n")
        )
        assert result.ok
        assert result.output_truncated
        assert len(result.output) == MAX_OUTPUT_LINES + 1
        assert result.output[:2] == ("line0", "line1")
        assert result.output[MAX_OUTPUT_LINES - 1] == f"line{MAX_OUTPUT_LINES - 1}"
        dropped = 250 - MAX_OUTPUT_LINES
        dropped_bytes = sum(len(f"line{n}\n") for n in range(MAX_OUTPUT_LINES, 250))
        assert result.output[-1] == (
            f"[output truncated: {dropped} more lines, {dropped_bytes} bytes not shown]"
        )

    def test_byte_cap(self, tmp_path: Path) -> None:
        # 40 lines of 2000 bytes: the 64 KiB cap comes before the line cap.
        result = run(
            script(
                tmp_path, "i=0\nwhile [ $i -lt 40 ]; do printf '%02000d\\n' $i; i=$((i+1)); done\n"
            )
        )
        kept = MAX_OUTPUT_BYTES // 2001
        assert len(result.output) == kept + 1
        assert sum(len(line) + 1 for line in result.output[:-1]) <= MAX_OUTPUT_BYTES
        assert result.output[-1].startswith(f"[output truncated: {40 - kept} more lines")
        assert result.output_truncated

    def test_a_long_line_is_cut(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "head -c 100000 /dev/zero | tr '\\0' x\necho\necho after\n"))
        assert result.output[0] == "x" * MAX_LINE_BYTES + " [...]"
        assert result.output[1] == "after"
        assert result.output[2] == (
            f"[output truncated: 0 more lines, {100000 - MAX_LINE_BYTES + 1} bytes not shown]"
        )
        assert result.output_truncated

    def test_a_flood_of_output_neither_blocks_nor_grows_memory(self, tmp_path: Path) -> None:
        result = run(script(tmp_path, "head -c 50000000 /dev/zero | tr '\\0' '\\n'\necho ok\n"))
        assert result.ok
        assert len(result.output) == MAX_OUTPUT_LINES + 1


class TestCannotStart:
    def test_missing_program(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope"
        result = run(missing)
        assert not result.ok
        assert result.pid is None
        assert result.returncode is None
        assert result.error == f"could not be started: {missing}: No such file or directory"
        assert result.describe() == result.error
        assert str(result.as_error("s3://b/k")) == (
            f"on_download command {missing} for s3://b/k could not be started: {missing}: "
            "No such file or directory"
        )

    def test_not_executable(self, tmp_path: Path) -> None:
        program = script(tmp_path, "exit 0\n")
        program.chmod(0o644)
        result = run(program)
        assert result.error == f"could not be started: {program}: Permission denied"

    def test_a_directory(self, tmp_path: Path) -> None:
        result = run(tmp_path)
        assert result.error == f"could not be started: {tmp_path}: Permission denied"

    def test_script_without_interpreter_line(self, tmp_path: Path) -> None:
        program = tmp_path / "plain"
        program.write_text("echo hi\n")
        program.chmod(0o755)
        result = run(program)
        assert result.error == (
            f"could not be started: {program}: Exec format error (a script needs a #! line)"
        )


def test_object_facts() -> None:
    assert FACTS == {
        "S3SQSD_PATH": "/srv/in/reports/q1.pdf",
        "S3SQSD_BUCKET": "acme-inbox",
        "S3SQSD_KEY": "reports/q1.pdf",
        "S3SQSD_VERSION_ID": "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
        "S3SQSD_SIZE": "1234",
        "S3SQSD_ETAG": "d41d8cd98f00b204e9800998ecf8427e",
        "S3SQSD_MESSAGE_ID": "0f1e2d3c-0000-4000-8000-000000000001",
        "S3SQSD_LAST_MODIFIED": "",
        "S3SQSD_CONTENT_TYPE": "",
    }


def runner_fds() -> set[str]:
    """Open pipes and pidfds of this process: what a run opens (other tests open sockets)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:") or "pidfd" in target:
            found.add(f"{fd}->{target}")
    return found


def test_no_file_descriptors_leak(tmp_path: Path) -> None:
    before = runner_fds()
    for _ in range(5):
        run(script(tmp_path, "echo x\n"))
        run(tmp_path / "missing")
    run(script(tmp_path, "sleep 5\n", name="slow.sh"), timeout=1)
    assert runner_fds() <= before


def collect(data: bytes, chunk: int) -> tuple[tuple[str, ...], bool]:
    output = hooks._Output()
    for start in range(0, len(data), chunk):
        output.feed(data[start : start + chunk])
    return output.finish()


STREAMS = [
    b"",
    b"one line without newline",
    b"\n\n\n",
    b"a\r\nb\xffc\n" + b"x" * 10000 + b"\nafter\n",
    b"".join(b"%d\n" % n for n in range(300)) + b"tail",
    b"y" * 70000,  # one overlong line, no newline at all
    (b"z" * 2000 + b"\n") * 40 + b"q" * 9000 + b"\nend",  # the byte cap, then a long line
    (b"w" * 5000 + b"\n") * 150,  # cut lines up to the line cap
]


@pytest.mark.parametrize("data", STREAMS)
@pytest.mark.parametrize("chunk", [1, 3, 4095, 4097, 65536])
def test_output_is_the_same_however_it_arrives(data: bytes, chunk: int) -> None:
    assert collect(data, chunk) == collect(data, len(data) or 1)


def test_output_accounting() -> None:
    data = b"".join(b"%d\n" % n for n in range(300)) + b"tail"
    lines, truncated = collect(data, len(data))
    assert truncated
    assert lines[:MAX_OUTPUT_LINES] == tuple(str(n) for n in range(MAX_OUTPUT_LINES))
    shown = sum(len(line) + 1 for line in lines[:MAX_OUTPUT_LINES])
    assert lines[-1] == (
        f"[output truncated: {300 - MAX_OUTPUT_LINES + 1} more lines, {len(data) - shown} "
        "bytes not shown]"
    )
