"""Chaos run: several real s3sqsd daemons on one queue, faults, kills, restarts; then the audit.

    python -m bench.chaos --profile quick      # CI: ~250 objects up to 1.5 MiB, 3 daemons
    python -m bench.chaos --profile full       # by hand: 2,000 objects up to 32 MiB
    python -m bench.chaos --profile scaleout   # by hand: 3,000 objects, 3 daemons, no chaos
    python -m bench.chaos --profile scaleout-quick   # CI variant of scaleout: 300 objects

What happens:

- The emulator (moto server with the project's race fixes: ``EmulatorProcess(plain=True)``,
  tests/support/emulator_server.py) runs in its own process on 127.0.0.1; a bucket notifies a
  queue (with a dead-letter queue whose redrive limit is out of reach, so only s3sqsd
  dead-letters, always with a reason).
- Every daemon talks to the emulator through one ``FaultProxy`` (tests/support/faultproxy.py)
  that faults ``--fault-rate`` of all S3 and SQS requests (500/503 errors, resets before the
  request, before the response and mid-body, truncated bodies, flipped bytes, latency).
- A producer uploads the objects (mixed sizes, awkward names) straight to the emulator, pacing
  itself to keep the queue shallow (moto scans the whole queue on every receive).
- ``--daemons`` daemons, each with its own download folder (two daemons never share one),
  consume the queue. Every few seconds one of them is SIGKILLed (most often), SIGTERMed, or
  SIGTERMed twice (the forced exit), and started again. A daemon that exits by itself is
  counted as a crash and started again, as systemd's Restart= would.
- With ``converge`` (the quick and full profiles): daemon 1 also runs reconcile passes (one
  at start, and on the SIGUSR1 some chaos steps send it), so listing passes race events on
  its folder; and ``s3sqsd sync`` runs again and again into daemon 2's folder while daemon 2
  runs and is killed, sometimes interrupted by SIGINT (exit 0, 1 for faulted objects, or 130).
- When everything is uploaded and the queue is empty, the chaos stops, every daemon is
  running, the queue drains, and every daemon gets one SIGTERM (a clean final stop).

The audit (exit status 1 unless all of it holds): every object on disk in the union of the
folders (0 missing), every copy on disk has the right bytes (SHA-256), 0 stray or partial
files at final paths, 0 temp files in ``.s3sqsd-tmp`` after the final stop, 0 files written
outside the download folders, the queue empty (visible and in flight), every dead-letter
entry carrying an ``s3sqsd.reason``, and with ``converge`` at least one finished reconcile pass
and one finished sync, every sync exiting 0, 1 or 130 (or killed by a SIGINT sent before it
was running; never a crash). Reported as well, not
gated: duplicate downloads (``object.downloaded`` lines per key above one, across all daemons
and restarts), kills,
stops, crashes, the faults applied per operation, and times. A JSON file has the figures.

Loops are bounded: the producer by the object count, the chaos by ``--deadline``; every wait
has a timeout; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.support.daemon import (
    PATH_LOCK_NAME,
    REPO_ROOT,
    TEMP_DIR_NAME,
    DaemonProcess,
    daemon_env,
    write_config,
)
from tests.support.emulator import REGION
from tests.support.emulator_server import EmulatorProcess
from tests.support.faultproxy import HARD_FAULTS, LATENCY, FaultProxy

KiB = 1024
MiB = 1024 * KiB

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "objects": 250,
        "max_size": int(1.5 * MiB),
        "daemons": 3,
        "fault_rate": 0.10,
        "chaos": True,
        "converge": True,
        "min_actions": 12,
        "deadline": 170.0,
    },
    "full": {
        "objects": 2000,
        "max_size": 32 * MiB,
        "daemons": 3,
        "fault_rate": 0.10,
        "chaos": True,
        "converge": True,
        "deadline": 3000.0,
    },
    "scaleout": {
        "objects": 3000,
        "max_size": 256 * KiB,
        "daemons": 3,
        "fault_rate": 0.0,
        "chaos": False,
        "deadline": 1800.0,
    },
    "scaleout-quick": {
        "objects": 300,
        "max_size": 256 * KiB,
        "daemons": 3,
        "fault_rate": 0.0,
        "chaos": False,
        "deadline": 150.0,
    },
}

MAX_QUEUE_DEPTH = 150  # the producer waits while more messages than this are visible
NAME_STYLES = ("{i:05d}.bin", "{i:05d} with space+plus.txt", "données/{i:05d} ü.csv", "{i:05d}")


def log(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ---- objects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    key: str
    size: int
    seed: str

    def body(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)


def plan_objects(count: int, max_size: int, rng: random.Random, seed: int) -> list[Spec]:
    """Mixed sizes: some empty, many small, fewer large, a handful near ``max_size``."""
    specs = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.05:
            size = 0
        elif roll < 0.15:
            size = rng.randint(1, 100)
        elif roll < 0.60:
            size = rng.randint(100, 64 * KiB)
        elif roll < 0.90:
            size = rng.randint(64 * KiB, min(512 * KiB, max_size))
        elif roll < 0.98:
            size = rng.randint(min(512 * KiB, max_size), max(min(4 * MiB, max_size), 1))
        else:
            size = rng.randint(max_size // 2, max_size)
        name = NAME_STYLES[i % len(NAME_STYLES)].format(i=i)
        key = f"chaos/{i % 17:02d}/{name}"
        specs.append(Spec(key=key, size=size, seed=f"{seed}:{key}"))
    return specs


# ---- daemons ----------------------------------------------------------------------------------


@dataclass
class Slot:
    """One daemon position: its folder, its current process, and what happened to it."""

    index: int
    root: Path
    config: dict[str, Any]
    current: DaemonProcess | None = None
    incarnations: int = 0
    downloaded: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.root / "downloads"

    def start(self) -> None:
        self.incarnations += 1
        proc = DaemonProcess(self.config, workdir=self.root, name=f"run-{self.incarnations:03d}")
        self.current = proc.start()

    def harvest(self) -> None:
        """Keep what the finished incarnation said; write its log next to its config."""
        proc = self.current
        if proc is None:
            return
        self.current = None
        records = proc.events()
        for record in records:
            name = str(record.get("event"))
            self.events[name] += 1
            if name == "object.downloaded":
                self.downloaded[str(record.get("key"))] += 1
            elif name == "message.dead_lettered":
                self.dead_lettered.append(
                    {k: record.get(k) for k in ("message_id", "reason", "error", "receive_count")}
                )
        with (self.root / f"{proc.name}.jsonl").open("w", encoding="utf-8") as out:
            for record in records:
                clean = {k: v for k, v in record.items() if k != "_t"}
                out.write(json.dumps(clean, ensure_ascii=False) + "\n")
            for line in proc.non_json:
                out.write(json.dumps({"non_json": line}) + "\n")
            if proc.stderr:
                out.write(json.dumps({"stderr": proc.stderr[-5000:]}) + "\n")
        proc.cleanup()

    def reap_if_exited(self) -> None:
        """A daemon that exited without being told to is a crash: count it, start it again."""
        proc = self.current
        if proc is None or proc.running():
            return
        code = proc.returncode
        self.exits[f"unexpected exit {code}"] += 1
        last = [r for r in proc.events() if r.get("level") in ("critical", "error")][-1:]
        said = ""
        for record in last:
            trace = str(record.get("exc_info") or "").strip().splitlines()
            said = f"{record.get('event')}: {trace[-1] if trace else record.get('message')}"
        self.crashes.append(f"daemon {self.index} run {self.incarnations}: status {code}; {said}")
        self.harvest()
        self.start()

    def kill(self) -> None:
        assert self.current is not None
        if self.current.running():
            self.current.kill9()
            self.exits["SIGKILL"] += 1
        self.harvest()

    def terminate(self, *, twice: bool = False, timeout: float = 40.0) -> int | None:
        proc = self.current
        assert proc is not None
        code: int | None = None
        if proc.running():
            proc.terminate()
            if twice:
                time.sleep(random.uniform(0.05, 0.5))
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            try:
                code = proc.wait_exit(timeout)
            except AssertionError:
                proc.kill9()
                self.exits["SIGTERM did not stop it: SIGKILL"] += 1
            else:
                self.exits[f"{'2 x ' if twice else ''}SIGTERM -> {code}"] += 1
        self.harvest()
        return code


class SyncRunner:
    """``s3sqsd sync`` run again and again into one daemon's folder while that daemon runs,
    as an operator backfilling beside the service would; sometimes interrupted (SIGINT)."""

    def __init__(self, slot: Slot, rng: random.Random) -> None:
        self._slot = slot
        self._rng = random.Random(rng.random())  # its own draws: the chaos's stay as they were
        self._stop = threading.Event()
        self.exits: Counter[int] = Counter()
        self.interrupted = 0
        self._thread = threading.Thread(target=self._run, name="sync-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 150.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        config = write_config(self._slot.root / "sync.yaml", self._slot.config)
        number = 0
        while not self._stop.is_set():
            number += 1
            log_path = self._slot.root / f"sync-{number:03d}.jsonl"
            with log_path.open("w", encoding="utf-8") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "s3sqsd", "sync", "--config", str(config)],
                    cwd=REPO_ROOT,
                    env=daemon_env(None),
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                )
                if self._rng.random() < 0.25:
                    time.sleep(self._rng.uniform(0.2, 2.0))
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGINT)
                        self.interrupted += 1
                try:
                    code = proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
            self.exits[code] += 1
            self._stop.wait(self._rng.uniform(0.5, 2.0))


class _NoSyncs:
    exits: Counter[int] = Counter()
    interrupted = 0


_NO_SYNCS = _NoSyncs()

# ---- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    workdir: Path
    rng: random.Random
    emulator: EmulatorProcess
    proxy: FaultProxy | None
    slots: list[Slot]
    specs: list[Spec]
    digests: dict[str, str] = field(default_factory=dict)
    uploaded: int = 0
    producer_done: threading.Event = field(default_factory=threading.Event)
    producer_error: list[str] = field(default_factory=list)
    chaos_actions: Counter[str] = field(default_factory=Counter)
    seen_on_disk: set[str] = field(default_factory=set)
    syncs: SyncRunner | None = None


def producer(run: Run, bucket: str, queue_url: str, stop: threading.Event) -> None:
    s3 = run.emulator.client("s3")
    try:
        for spec in run.specs:
            while not stop.is_set() and run.emulator.queue_counts(queue_url)[0] > MAX_QUEUE_DEPTH:
                stop.wait(0.5)
            if stop.is_set():
                return
            body = spec.body()
            run.digests[spec.key] = hashlib.sha256(body).hexdigest()
            s3.put_object(Bucket=bucket, Key=spec.key, Body=body)
            run.uploaded += 1
    except Exception as exc:
        run.producer_error.append(repr(exc))
    finally:
        run.producer_done.set()


def chaos_step(run: Run) -> None:
    slot = run.rng.choice(run.slots)
    roll = run.rng.random()
    if run.args.converge and slot.index == 1 and roll < 0.25 and slot.current is not None:
        with contextlib.suppress(ProcessLookupError):
            slot.current.signal(signal.SIGUSR1)  # a reconcile pass now, racing the events
        run.chaos_actions["SIGUSR1 (reconcile)"] += 1
        return
    if roll < 0.70:
        action = "SIGKILL"
        slot.kill()
    elif roll < 0.90:
        action = "SIGTERM"
        slot.terminate()
    else:
        action = "2 x SIGTERM"
        slot.terminate(twice=True)
    run.chaos_actions[action] += 1
    if run.rng.random() < 0.3:  # sometimes the host stays down a little while
        time.sleep(run.rng.uniform(0.5, 3.0))
    slot.start()


def queue_empty(run: Run, queue_url: str) -> bool:
    return run.emulator.queue_counts(queue_url) == (0, 0)


def all_on_disk(run: Run) -> bool:
    """Every object has a file in some folder (checked again in full by the audit)."""
    if not run.producer_done.is_set():
        return False
    for spec in run.specs:
        if spec.key in run.seen_on_disk:
            continue
        if not any((slot.folder / spec.key).is_file() for slot in run.slots):
            return False
        run.seen_on_disk.add(spec.key)
    return True


def chaos_done(run: Run) -> bool:
    enough = not run.args.chaos or sum(run.chaos_actions.values()) >= run.args.min_actions
    return enough and all_on_disk(run)


def drive(run: Run, queue_url: str, started: float) -> bool:
    """The chaos phase; True when everything settled before the deadline."""
    deadline = started + run.args.deadline
    next_chaos = time.monotonic() + run.rng.uniform(*run.args.kill_interval)
    settled_since: float | None = None
    last_report = 0.0
    while time.monotonic() < deadline:
        for slot in run.slots:
            slot.reap_if_exited()
        now = time.monotonic()
        if run.args.chaos and now >= next_chaos and not run.producer_done.is_set():
            chaos_step(run)
            next_chaos = time.monotonic() + run.rng.uniform(*run.args.kill_interval)
        elif run.args.chaos and now >= next_chaos and not chaos_done(run):
            chaos_step(run)  # keep going until the work is done (and enough chaos happened)
            next_chaos = time.monotonic() + run.rng.uniform(*run.args.kill_interval)
        if now - last_report >= 10:
            last_report = now
            visible, in_flight = run.emulator.queue_counts(queue_url)
            log(
                f"uploaded {run.uploaded}/{len(run.specs)}, queue {visible} visible "
                f"{in_flight} in flight, chaos {dict(run.chaos_actions)}"
            )
        if chaos_done(run) and queue_empty(run, queue_url):
            settled_since = settled_since or now
            if now - settled_since >= 2.0:
                return True
        else:
            settled_since = None
        time.sleep(0.25)
    return False


def final_stop(run: Run, queue_url: str, started: float) -> bool:
    """No more chaos: every daemon up, the queue drained, then one SIGTERM each."""
    for slot in run.slots:
        slot.reap_if_exited()
    drain_deadline = time.monotonic() + max(60.0, run.args.deadline - (time.monotonic() - started))
    drained = False
    while time.monotonic() < drain_deadline:
        for slot in run.slots:
            slot.reap_if_exited()
        if queue_empty(run, queue_url):
            drained = True
            break
        time.sleep(0.5)
    for slot in run.slots:
        code = slot.terminate(timeout=60.0)
        if code not in (0, None):
            slot.crashes.append(f"daemon {slot.index} final stop: status {code}")
    return drained


# ---- the audit --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audit(run: Run, pipeline: Any, elapsed: float, settled: bool, drained: bool) -> dict[str, Any]:
    expected = {spec.key: spec for spec in run.specs}
    missing: list[str] = []
    wrong: list[str] = []
    copies: Counter[str] = Counter()
    bytes_on_disk = 0
    for spec in run.specs:
        found = False
        for slot in run.slots:
            path = slot.folder / spec.key
            if path.is_file() and not path.is_symlink():
                found = True
                copies[spec.key] += 1
                bytes_on_disk += path.stat().st_size
                if sha256_file(path) != run.digests.get(spec.key):
                    wrong.append(f"{slot.folder.name}@{slot.index}: {spec.key}")
        if not found:
            missing.append(spec.key)
    stray: list[str] = []
    temp_left: list[str] = []
    for slot in run.slots:
        if not slot.folder.exists():
            continue
        for path in slot.folder.rglob("*"):
            relative = path.relative_to(slot.folder)
            if relative.parts[0] == TEMP_DIR_NAME:
                if relative.parts[1:] == (PATH_LOCK_NAME,):
                    continue  # the per-path lock file: there for good, not a leftover
                if path.is_file() or path.is_symlink():
                    temp_left.append(f"daemon {slot.index}: {relative}")
                continue
            if path.is_dir() and not path.is_symlink():
                continue
            if relative.as_posix() not in expected:
                stray.append(f"daemon {slot.index}: {relative}")
    outside: list[str] = []
    for path in run.workdir.rglob("*"):
        if path.is_dir():
            continue
        relative = path.relative_to(run.workdir)
        if relative.parts[0].startswith("daemon-") and len(relative.parts) >= 2:
            if relative.parts[1] == "downloads":
                continue
            if len(relative.parts) == 2 and path.suffix in (".yaml", ".jsonl"):
                continue
        if relative.as_posix() == "report.json":
            continue
        outside.append(relative.as_posix())

    visible, in_flight = run.emulator.queue_counts(pipeline.queue_url)
    dlq_entries = []
    sqs = run.emulator.client("sqs")
    dlq_visible, dlq_in_flight = run.emulator.queue_counts(pipeline.dlq_url)
    seen: set[str] = set()
    for _ in range(200):  # bounded: at most 2,000 entries listed
        response = sqs.receive_message(
            QueueUrl=pipeline.dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=600,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            if message["MessageId"] in seen:
                continue
            seen.add(message["MessageId"])
            attributes = message.get("MessageAttributes", {})

            def attr(name: str, attributes: dict[str, Any] = attributes) -> str | None:
                value = attributes.get(name)
                return None if value is None else str(value.get("StringValue"))

            dlq_entries.append(
                {
                    "reason": attr("s3sqsd.reason"),
                    "error": (attr("s3sqsd.error") or "")[:300],
                    "source_message_id": attr("s3sqsd.source_message_id"),
                    "receive_count": attr("s3sqsd.receive_count"),
                }
            )
    without_reason = [e for e in dlq_entries if not e["reason"]]

    downloads: Counter[str] = Counter()
    events: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    crashes: list[str] = []
    for slot in run.slots:
        downloads.update(slot.downloaded)
        events.update(slot.events)
        exits.update(slot.exits)
        crashes += slot.crashes
    duplicate_keys = {k: n for k, n in downloads.items() if n > 1}
    proxy_figures: dict[str, Any] = {}
    if run.proxy is not None:
        counts = run.proxy.counts
        faults = run.proxy.faults
        total = sum(counts.values())
        applied = sum(faults.values())
        per_operation: dict[str, dict[str, int]] = {}
        for (operation, fault), n in sorted(faults.items()):
            per_operation.setdefault(operation, {})[fault] = n
        proxy_figures = {
            "requests": total,
            "faulted": applied,
            "faulted_fraction": round(applied / total, 4) if total else 0.0,
            "requests_per_operation": dict(sorted(counts.items())),
            "faults_per_operation": per_operation,
            "body_faults_without_a_body": sum(run.proxy.skipped.values()),
        }
    checks = {
        "all_uploaded": run.uploaded == len(run.specs) and not run.producer_error,
        "settled_before_deadline": settled,
        "queue_drained_before_final_stop": drained,
        "missing": len(missing) == 0,
        "wrong_bytes": len(wrong) == 0,
        "stray_or_partial_files": len(stray) == 0,
        "temp_files_after_final_stop": len(temp_left) == 0,
        "files_outside_download_folders": len(outside) == 0,
        "queue_empty": (visible, in_flight) == (0, 0),
        "dead_letters_have_reasons": len(without_reason) == 0,
    }
    if run.args.converge:
        syncs = run.syncs.exits if run.syncs is not None else Counter()
        checks["reconcile_passes_finished"] = run.slots[0].events["reconcile.finished"] >= 1
        checks["syncs_finished"] = syncs[0] + syncs[1] >= 1
        # -2: a SIGINT that lands before the command is running (Python still importing) ends
        # the process by the signal, as a shell's Ctrl-C does; nothing was written yet.
        checks["syncs_exit_0_1_or_130"] = set(syncs) <= {0, 1, 130, -signal.SIGINT}
    return {
        "profile": run.args.profile,
        "seed": run.args.seed,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "settings": {
            "objects": len(run.specs),
            "max_size": run.args.max_size,
            "bytes_uploaded": sum(spec.size for spec in run.specs),
            "daemons": len(run.slots),
            "workers_per_daemon": run.args.workers,
            "fault_rate": run.args.fault_rate,
            "chaos": run.args.chaos,
            "kill_interval_s": list(run.args.kill_interval),
        },
        "elapsed_s": round(elapsed, 1),
        "passed": all(checks.values()),
        "checks": checks,
        "figures": {
            "objects": len(run.specs),
            "missing": len(missing),
            "wrong_bytes": len(wrong),
            "stray_or_partial_files": len(stray),
            "temp_files_after_final_stop": len(temp_left),
            "files_outside_download_folders": len(outside),
            "queue_visible": visible,
            "queue_in_flight": in_flight,
            "dead_lettered": len(dlq_entries),
            "dead_letter_queue_visible_before_listing": dlq_visible,
            "dead_letter_queue_in_flight_before_listing": dlq_in_flight,
            "dead_lettered_without_reason": len(without_reason),
            "downloads_logged": sum(downloads.values()),
            "duplicate_downloads": sum(n - 1 for n in duplicate_keys.values()),
            "keys_downloaded_more_than_once": len(duplicate_keys),
            "objects_on_disk_in_more_than_one_folder": sum(1 for n in copies.values() if n > 1),
            "objects_on_disk_without_a_download_line": sum(
                1 for key in copies if downloads[key] == 0
            ),
            "bytes_on_disk": bytes_on_disk,
            "downloads_per_daemon": [sum(slot.downloaded.values()) for slot in run.slots],
            "daemon_starts": sum(slot.incarnations for slot in run.slots),
            "crashes": len(crashes),
        },
        "chaos_actions": dict(run.chaos_actions),
        "converge": {
            "reconcile_passes_finished": run.slots[0].events["reconcile.finished"],
            "reconcile_missing": run.slots[0].events["reconcile.missing"],
            "sync_exits": {
                str(code): n for code, n in sorted((run.syncs or _NO_SYNCS).exits.items())
            },
            "syncs_interrupted": (run.syncs or _NO_SYNCS).interrupted,
        }
        if run.args.converge
        else None,
        "exits": dict(sorted(exits.items())),
        "log_events": dict(sorted(events.items())),
        "proxy": proxy_figures,
        "problems": {
            "missing": missing[:50],
            "wrong_bytes": wrong[:50],
            "stray_or_partial_files": stray[:50],
            "temp_files_after_final_stop": temp_left[:50],
            "files_outside_download_folders": outside[:50],
            "producer_errors": run.producer_error,
            "crashes": crashes[:50],
        },
        "dead_letters": dlq_entries[:200],
        "duplicate_keys_sample": dict(list(duplicate_keys.items())[:20]),
    }


def print_report(report: dict[str, Any]) -> None:
    f = report["figures"]
    lines = [
        "",
        f"==== chaos report: profile {report['profile']}, seed {report['seed']}, "
        f"{report['elapsed_s']} s, {'PASSED' if report['passed'] else 'FAILED'}",
        f"objects {f['objects']} ({report['settings']['bytes_uploaded']} bytes), "
        f"daemons {report['settings']['daemons']}, starts {f['daemon_starts']}, "
        f"chaos {report['chaos_actions']}",
        f"missing {f['missing']}, wrong bytes {f['wrong_bytes']}, stray/partial files "
        f"{f['stray_or_partial_files']}, temp files after final stop "
        f"{f['temp_files_after_final_stop']}, files outside folders "
        f"{f['files_outside_download_folders']}",
        f"queue: {f['queue_visible']} visible, {f['queue_in_flight']} in flight; "
        f"dead-lettered {f['dead_lettered']} ({f['dead_lettered_without_reason']} without reason)",
        f"downloads logged {f['downloads_logged']} (per daemon {f['downloads_per_daemon']}), "
        "duplicate downloads "
        f"{f['duplicate_downloads']} over {f['keys_downloaded_more_than_once']} keys; objects "
        f"in more than one folder {f['objects_on_disk_in_more_than_one_folder']}; on disk "
        f"without a download line {f['objects_on_disk_without_a_download_line']}",
        f"exits: {report['exits']}",
        f"crashes: {f['crashes']}",
    ]
    if report["proxy"]:
        p = report["proxy"]
        lines.append(
            f"proxy: {p['requests']} requests, {p['faulted']} faulted "
            f"({100 * p['faulted_fraction']:.1f} %): {p['faults_per_operation']}"
        )
    for entry in report["dead_letters"][:20]:
        lines.append(f"  DLQ: reason {entry['reason']}: {entry['error'][:160]}")
    for name, items in report["problems"].items():
        for item in items[:10]:
            lines.append(f"  {name}: {item}")
    lines.append(f"checks: {report['checks']}")
    print("\n".join(lines), flush=True)


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--objects", type=int, help="override the profile's object count")
    parser.add_argument("--max-size", type=int, help="override the largest object, in bytes")
    parser.add_argument("--daemons", type=int, help="override the number of daemons")
    parser.add_argument("--workers", type=int, default=4, help="download threads per daemon")
    parser.add_argument("--fault-rate", type=float, help="fraction of requests faulted")
    parser.add_argument(
        "--kill-interval",
        type=float,
        nargs=2,
        default=(2.0, 6.0),
        metavar=("MIN", "MAX"),
        help="seconds between chaos actions (uniform)",
    )
    parser.add_argument("--no-chaos", action="store_true", help="no kills or stops")
    parser.add_argument(
        "--no-converge", action="store_true", help="no reconcile passes, no concurrent sync"
    )
    parser.add_argument("--deadline", type=float, help="seconds for the whole run")
    parser.add_argument("--workdir", type=Path, help="where the folders go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    parser.add_argument("--json", type=Path, help="write the figures here as well")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    args.objects = args.objects if args.objects is not None else profile["objects"]
    args.max_size = args.max_size if args.max_size is not None else profile["max_size"]
    args.daemons = args.daemons if args.daemons is not None else profile["daemons"]
    args.fault_rate = args.fault_rate if args.fault_rate is not None else profile["fault_rate"]
    args.deadline = args.deadline if args.deadline is not None else profile["deadline"]
    args.chaos = profile["chaos"] and not args.no_chaos
    args.converge = profile.get("converge", False) and not args.no_converge
    args.min_actions = profile.get("min_actions", 0)
    return args


def via(url: str, port: int) -> str:
    return urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{port}"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="s3sqsd-chaos-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    log(f"profile {args.profile}, seed {args.seed}, workdir {workdir}")
    emulator = EmulatorProcess(plain=True)
    proxy: FaultProxy | None = None
    slots: list[Slot] = []
    stop_producer = threading.Event()
    report: dict[str, Any] | None = None
    try:
        pipeline = emulator.pipeline(max_receive_count=1000)
        assert pipeline.dlq_url is not None
        parts = urlsplit(emulator.endpoint)
        assert parts.hostname is not None
        assert parts.port is not None
        proxy = FaultProxy((parts.hostname, parts.port), seed=args.seed)
        if args.fault_rate > 0:
            # The non-latency faults, drawn uniformly; latency is a fifth of the fault rate.
            proxy.add_rule(operation="*", fault=HARD_FAULTS, probability=args.fault_rate * 0.8)
            proxy.add_rule(
                operation="*", fault=LATENCY, probability=args.fault_rate * 0.2, delay=1.0
            )
        specs = plan_objects(args.objects, args.max_size, rng, args.seed)
        for index in range(1, args.daemons + 1):
            root = workdir / f"daemon-{index}"
            root.mkdir()
            config = {
                "aws_region": REGION,
                "sqs_queue_url": via(pipeline.queue_url, proxy.port),
                "dead_letter_queue_url": via(pipeline.dlq_url, proxy.port),
                "download_folder": str(root / "downloads"),
                "s3_bucket_name": pipeline.bucket,
                "endpoint_url": proxy.url,
                "workers": args.workers,
                "wait_time_seconds": 2,
                "visibility_timeout_seconds": 15,
                "shutdown_timeout_seconds": 8,
                "retry": {"max_attempts": 10, "base_delay_seconds": 1, "max_delay_seconds": 4},
                "log_level": "info",
            }
            if args.converge and index == 1:
                config["reconcile"] = {"interval_seconds": 60, "workers": 2, "min_age_seconds": 0}
            slots.append(Slot(index=index, root=root, config=config))
        run = Run(args, workdir, rng, emulator, proxy, slots, specs)
        for slot in slots:
            slot.start()
        if args.converge:
            run.syncs = SyncRunner(slots[min(1, len(slots) - 1)], rng)
            run.syncs.start()
        thread = threading.Thread(
            target=producer,
            args=(run, pipeline.bucket, pipeline.queue_url, stop_producer),
            name="producer",
            daemon=True,
        )
        thread.start()
        settled = drive(run, pipeline.queue_url, started)
        stop_producer.set()
        thread.join(timeout=30)
        if run.syncs is not None:
            run.syncs.stop()
        log(f"chaos over ({'settled' if settled else 'DEADLINE'}); final drain and stop")
        proxy.clear_rules()  # the final stop is clean: no faults while the daemons drain
        drained = final_stop(run, pipeline.queue_url, started)
        report = audit(run, pipeline, time.monotonic() - started, settled, drained)
    finally:
        stop_producer.set()
        for slot in slots:
            if slot.current is not None:
                slot.current.cleanup()
        if proxy is not None:
            proxy.close()
        emulator.stop()
    print_report(report)
    text = json.dumps(report, indent=2, sort_keys=False)
    (workdir / "report.json").write_text(text + "\n", encoding="utf-8")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    if own_workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
