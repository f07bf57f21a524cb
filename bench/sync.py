"""Benchmark ``s3sqsd sync`` against the tools a user would pick instead: ``aws s3 sync`` and
``rclone copy``.

    python -m bench.sync                  # the full run (about 8 minutes on 2 cores)
    python -m bench.sync --quick          # a smoke run of every pass (about a minute)
    python -m bench.sync --json bench/results/sync.json --repeat 2

Run from the repository root. Prerequisites, each only for its own contestant (a missing one is
skipped with a line saying so, the others still run): the AWS CLI in ``.venv-bench``
(``make bench-venv``: ``requirements/bench.txt``; ``--aws PATH`` for another) and rclone on PATH
(Debian's: ``apt-get install rclone``; ``--rclone PATH``).

In one run, on this machine: the emulator (moto's server with the fixes of
``tests/support/emulator_server.py``) in its own process on 127.0.0.1, the same dummy
credentials for every contestant (the test suite's, in the environment), and each contestant as
a process of its own, started by this module and timed from its start to its exit:

- ``s3sqsd``: ``python -m s3sqsd sync --config FILE``, ``workers: 8`` (``--workers``), every
  other setting at its default: each file fsynced and renamed into place, its bytes checked
  against the listed size and ETag (and the object's checksum when it has one), its provenance
  recorded, one log line per download;
- ``aws``: ``aws s3 sync s3://BUCKET FOLDER --only-show-errors --no-progress`` with
  ``max_concurrent_requests`` = workers and path-style addressing (``AWS_CONFIG_FILE``);
- ``rclone``: ``rclone copy bench:BUCKET FOLDER --transfers W --checkers W --checksum
  --s3-no-check-bucket``, the remote defined by environment variables (``env_auth``, the
  endpoint, path style). ``--checksum`` compares size and MD5 (the ETag) from the listing:
  rclone's own advice to avoid a HEAD per object, and the closest to s3sqsd's test (size and
  ETag). ``rclone-mtime`` (the no-op pass only) is rclone's default comparison, size and
  modification time, which costs a HEAD per object on S3.

Passes, each contestant into a folder of its own:

1. ``small``: N x 4 KiB objects into an empty folder (files/s);
2. ``large``: 16 x 64 MiB objects into an empty folder (MB/s);
3. ``top-up``: the small bucket grows to the no-op count; each contestant syncs its ``small``
   folder again, downloading the new objects only (recorded, no target);
4. ``no-op``: the same again with nothing to do (wall time and peak RSS).

Each run records the load average at its start, wall time, CPU (user + system of the process
and its reaped children, from ``wait4``), peak RSS (its ``VmHWM`` read every 10 ms, and the sum
over the process tree every 0.5 s when it has children), the emulator's CPU and the requests
it served, and checks the folder: every object at its path with its size, and the MD5 of a
sample equal to the object's. Prints a Markdown table and the targets of issue 15, and writes
everything as JSON (``--json``). Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.ablate import ablate, copy_tree
from bench.harness import (
    BENCH_DIR,
    config_overrides,
    fmt,
    loadavg,
    machine,
    print_report,
    proc_sample,
    remove_unless_many,
)
from tests.support.daemon import REPO_ROOT, daemon_env
from tests.support.emulator import REGION
from tests.support.emulator_server import EmulatorProcess

MIB = 1 << 20
CONTESTANTS = ("s3sqsd", "aws", "rclone")
NOOP_ONLY = ("rclone-mtime",)  # measured on the no-op pass only
DEFAULT_AWS = REPO_ROOT / ".venv-bench" / "bin" / "aws"
RCLONE_REMOTE = "bench"
TREE_SAMPLE_SECONDS = 0.5
HWM_SAMPLE_SECONDS = 0.01


@dataclass(frozen=True)
class Plan:
    small_count: int = 5000
    small_size: int = 4096
    large_count: int = 16
    large_size: int = 64 * MIB
    noop_count: int = 20000  # the small bucket grows to this for the top-up and no-op passes
    workers: int = 8
    cap_seconds: float = 600.0  # a contestant still running then is killed (and marked so)
    repeat: int = 1
    verify_sample: int = 50  # files of each run whose MD5 is compared with the object's

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            small_count=300,
            large_count=4,
            large_size=16 * MIB,
            noop_count=1000,
            cap_seconds=120.0,
        )


# ---- the contestants' command lines (pure) --------------------------------------------------


def aws_config_text(workers: int) -> str:
    """The ``AWS_CONFIG_FILE`` of the ``aws`` contestant: its concurrency equal to s3sqsd's
    workers, path-style requests (the emulator has no virtual-host buckets), the test region."""
    return (
        "[default]\n"
        f"region = {REGION}\n"
        "s3 =\n"
        f"  max_concurrent_requests = {workers}\n"
        "  addressing_style = path\n"
    )


def rclone_env(endpoint: str) -> dict[str, str]:
    """The rclone remote ``bench:`` as environment variables: no config file, the credentials
    from the environment (``env_auth``), the emulator's endpoint, path-style requests."""
    prefix = f"RCLONE_CONFIG_{RCLONE_REMOTE.upper()}_"
    return {
        "RCLONE_CONFIG": os.devnull,
        prefix + "TYPE": "s3",
        prefix + "PROVIDER": "Other",
        prefix + "ENV_AUTH": "true",
        prefix + "ENDPOINT": endpoint,
        prefix + "REGION": REGION,
        prefix + "FORCE_PATH_STYLE": "true",
    }


def s3sqsd_config(*, bucket: str, folder: Path, endpoint: str, workers: int) -> dict[str, Any]:
    """s3sqsd's config for one run: its defaults, plus the bucket, folder, endpoint and workers.
    ``sqs_queue_url`` is required by the config but never used by ``sync``."""
    return {
        "sqs_queue_url": f"{endpoint}/123456789012/unused",
        "s3_bucket_name": bucket,
        "download_folder": str(folder),
        "aws_region": REGION,
        "endpoint_url": endpoint,
        "workers": workers,
    }


def command(
    kind: str,
    *,
    bucket: str,
    folder: Path,
    workers: int,
    endpoint: str,
    config_file: Path,
    aws: str,
    rclone: str,
) -> list[str]:
    """The command line of ``kind`` syncing ``bucket`` into ``folder``. ``config_file``: the
    s3sqsd config file (written by the caller) or, for ``aws``, its ``AWS_CONFIG_FILE``."""
    if kind == "s3sqsd":
        return [sys.executable, "-m", "s3sqsd", "sync", "--config", str(config_file)]
    if kind == "aws":
        return [
            aws,
            "s3",
            "sync",
            f"s3://{bucket}",
            str(folder),
            "--endpoint-url",
            endpoint,
            "--only-show-errors",
            "--no-progress",
        ]
    if kind in ("rclone", "rclone-mtime"):
        argv = [
            rclone,
            "copy",
            f"{RCLONE_REMOTE}:{bucket}",
            str(folder),
            "--transfers",
            str(workers),
            "--checkers",
            str(workers),
            "--s3-no-check-bucket",
        ]
        return [*argv, "--checksum"] if kind == "rclone" else argv
    raise ValueError(f"unknown contestant {kind!r}")


def is_s3sqsd(kind: str) -> bool:
    """``s3sqsd`` and its ablated copies (``s3sqsd-no-fsync``...: ``--ablate``)."""
    return kind == "s3sqsd" or kind.startswith("s3sqsd-no-")


def missing(kind: str, *, aws: str, rclone: str) -> str | None:
    """Why ``kind`` cannot run here (one line), or None when it can."""
    if kind == "aws" and not (shutil.which(aws) or os.access(aws, os.X_OK)):
        return f"{aws} not found: make bench-venv (requirements/bench.txt), or --aws PATH"
    if kind.startswith("rclone") and not shutil.which(rclone):
        return f"{rclone} not found: apt-get install rclone, or --rclone PATH"
    return None


# ---- the targets (pure) ---------------------------------------------------------------------


def _row(rows: Sequence[Mapping[str, Any]], pass_name: str, kind: str) -> Mapping[str, Any]:
    for row in rows:
        if (row["pass"], row["contestant"]) == (pass_name, kind):
            return row
    return {}


def judge(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Issue 15's targets, each with the figures it was judged on; ``met`` None: a figure is
    missing (a contestant skipped or incomplete). The no-op pass is judged against the faster
    of rclone's two comparisons."""
    out: list[dict[str, Any]] = []

    def ratio(name: str, value: Any, reference: Any, bound: float, *, at_least: bool) -> None:
        if value is None or reference in (None, 0):
            out.append({"target": name, "met": None, "detail": "not measured in this run"})
            return
        r = value / reference
        out.append(
            {
                "target": name,
                "met": r >= bound if at_least else r <= bound,
                "detail": f"{value:,.2f} / {reference:,.2f} = {r:.2f} (bound {bound})",
            }
        )

    def figure(pass_name: str, kind: str, key: str) -> Any:
        row = _row(rows, pass_name, kind)
        return row.get(key) if row.get("complete") else None

    small = figure("small", "s3sqsd", "files_per_s")
    ratio(
        "small: files/s ≥ 1.5 x aws",
        small,
        figure("small", "aws", "files_per_s"),
        1.5,
        at_least=True,
    )
    ratio(
        "small: files/s ≥ 1.0 x rclone",
        small,
        figure("small", "rclone", "files_per_s"),
        1.0,
        at_least=True,
    )
    ratio(
        "large: MB/s ≥ 0.9 x rclone",
        figure("large", "s3sqsd", "mb_per_s"),
        figure("large", "rclone", "mb_per_s"),
        0.9,
        at_least=True,
    )
    rclone_noop = [
        t for t in (figure("no-op", k, "seconds") for k in ("rclone", "rclone-mtime")) if t
    ]
    ratio(
        "no-op: time ≤ 1.0 x rclone (its faster comparison)",
        figure("no-op", "s3sqsd", "seconds"),
        min(rclone_noop) if rclone_noop else None,
        1.0,
        at_least=False,
    )
    rss = figure("no-op", "s3sqsd", "peak_rss_mib")
    out.append(
        {"target": "no-op: s3sqsd peak RSS ≤ 100 MiB", "met": None, "detail": "not measured"}
        if rss is None
        else {
            "target": "no-op: s3sqsd peak RSS ≤ 100 MiB",
            "met": rss <= 100,
            "detail": f"{rss:,.1f} MiB ≤ 100",
        }
    )
    return out


def summarise(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (pass, contestant): the median of each figure over repeats; ``complete``
    only when every repeat put every object in place."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["pass"], r["contestant"]), []).append(r)
    rows = []
    for (pass_name, kind), runs in groups.items():
        row: dict[str, Any] = {
            "pass": pass_name,
            "contestant": kind,
            "runs": len(runs),
            "complete": all(r["complete"] for r in runs),
            "load_average": ", ".join(r["load_average"] for r in runs),
        }
        for _, key, _ in COLUMNS:
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rows.append(row)
    return rows


COLUMNS: list[tuple[str, str, int]] = [
    ("files", "files", 0),
    ("s", "seconds", 2),
    ("files/s", "files_per_s", 1),
    ("MB/s", "mb_per_s", 1),
    ("CPU s", "cpu_seconds", 2),
    ("CPU ms/file", "cpu_ms_per_file", 2),
    ("peak RSS MiB", "peak_rss_mib", 1),
    ("emulator CPU s", "emulator_cpu_seconds", 2),
]


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ["pass", "contestant", *[c[0] for c in COLUMNS], "load average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = row["contestant"] + ("" if row["complete"] else " (INCOMPLETE)")
        if row["runs"] > 1:
            name += f" x{row['runs']}"
        cells = [row["pass"], name, *[fmt(row.get(k), d) for _, k, d in COLUMNS]]
        lines.append("| " + " | ".join([*cells, row["load_average"]]) + " |")
    return "\n".join(lines)


# ---- objects --------------------------------------------------------------------------------


@dataclass
class Objects:
    """A bucket's objects as the benchmark PUT them: key -> (size, MD5)."""

    bucket: str
    objects: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.objects.values())


def put_objects(
    emulator: EmulatorProcess, objects: Objects, keys: Sequence[str], size: int
) -> None:
    """PUT ``keys`` of ``size`` random bytes each (8 at a time when small, one by one when
    large), recording each one's MD5."""
    s3 = emulator.client("s3")

    def put(key: str) -> tuple[str, int, str]:
        data = os.urandom(size)
        s3.put_object(Bucket=objects.bucket, Key=key, Body=data)
        return key, size, hashlib.md5(data, usedforsecurity=False).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(8 if size <= MIB else 1) as pool:
        for key, length, md5 in pool.map(put, keys):
            objects.objects[key] = (length, md5)


# ---- one run --------------------------------------------------------------------------------


@dataclass
class Bench:
    plan: Plan
    emulator: EmulatorProcess
    workdir: Path
    aws: str
    rclone: str
    kinds: list[str]
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None
    ablated: dict[str, Path] = field(default_factory=dict)  # contestant -> its tree (--ablate)
    s3sqsd_extra: dict[str, Any] = field(default_factory=dict)  # --s3sqsd-config

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def environment(self, kind: str) -> dict[str, str]:
        """The test credentials and region (``daemon_env``), plus each tool's own settings."""
        env = daemon_env({"PYTHONPATH": str(self.tree(kind)) if is_s3sqsd(kind) else None})
        if kind == "aws":
            config = self.workdir / "aws-config"
            config.write_text(aws_config_text(self.plan.workers), encoding="utf-8")
            env["AWS_CONFIG_FILE"] = str(config)
        elif kind.startswith("rclone"):
            env.update(rclone_env(self.emulator.endpoint))
        return env

    def put(self, objects: Objects, prefix: str, numbers: range, size: int) -> None:
        started = time.monotonic()
        put_objects(self.emulator, objects, [f"{prefix}-{i:05d}.bin" for i in numbers], size)
        took = time.monotonic() - started
        self.log(f"{len(numbers)} x {size} B objects into {objects.bucket} in {took:.1f}s")

    def tree(self, kind: str) -> Path:
        """Where ``kind`` runs from: this checkout, or an ablated copy of it."""
        return self.ablated.get(kind, REPO_ROOT)

    def argv(self, kind: str, objects: Objects, folder: Path, label: str) -> list[str]:
        config_file = self.workdir / f"{label}.yaml"
        if is_s3sqsd(kind):
            config = s3sqsd_config(
                bucket=objects.bucket,
                folder=folder,
                endpoint=self.emulator.endpoint,
                workers=self.plan.workers,
            )
            config.update(self.s3sqsd_extra)
            config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        argv = command(
            "s3sqsd" if is_s3sqsd(kind) else kind,
            bucket=objects.bucket,
            folder=folder,
            workers=self.plan.workers,
            endpoint=self.emulator.endpoint,
            config_file=config_file,
            aws=self.aws,
            rclone=self.rclone,
        )
        if is_s3sqsd(kind) and self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            output = self.profile_dir / f"{label}.txt"
            argv = [
                py_spy,
                "record",
                "--rate",
                "250",
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(output),
                "--",
                *argv,
            ]
        return argv

    def run(self, pass_name: str, kind: str, objects: Objects, folder: Path, *, files: int) -> None:
        """Run ``kind`` once on ``objects`` into ``folder``; ``files``: what it has to download
        (0 on the no-op pass)."""
        label = f"{pass_name}-{kind}-{len(self.results)}"
        argv = self.argv(kind, objects, folder, label)
        env = self.environment(kind)
        log_path = self.workdir / f"{label}.log"
        load = loadavg()
        e0 = proc_sample(self.emulator.pid)
        r0 = self.emulator.requests()
        with open(log_path, "wb") as log:
            status, elapsed, cpu, peak_kib, capped = run_measured(
                argv, env=env, cwd=self.tree(kind), output=log, cap_seconds=self.plan.cap_seconds
            )
        e1 = proc_sample(self.emulator.pid)
        r1 = self.emulator.requests()
        in_place, bad = check_folder(folder, objects, sample=self.plan.verify_sample)
        complete = status == 0 and not capped and in_place == len(objects.objects) and not bad
        moved = files * (objects.total_bytes / max(1, len(objects.objects)))
        record: dict[str, Any] = {
            "pass": pass_name,
            "contestant": kind,
            "load_average": load,
            "objects": len(objects.objects),
            "files": files,
            "in_place": in_place,
            "md5_mismatches": bad,
            "complete": complete,
            "exit_status": status,
            "capped": capped,
            "seconds": elapsed,
            "files_per_s": files / elapsed if files else None,
            "mb_per_s": moved / MIB / elapsed if files else None,
            "cpu_seconds": cpu,
            "cpu_ms_per_file": cpu * 1000 / files if files else None,
            "peak_rss_mib": peak_kib / 1024,
            "emulator_cpu_seconds": e1.cpu_seconds - e0.cpu_seconds,
            "requests": {k: v - r0.get(k, 0) for k, v in r1.items() if v - r0.get(k, 0)},
            "command": [a if a != sys.executable else "python" for a in argv],
        }
        if not complete:
            record["output_tail"] = log_path.read_text("utf-8", "replace")[-2000:]
        self.results.append(record)
        shown = ", ".join(
            f"{key}={fmt(record[key], digits)}"
            for _, key, digits in COLUMNS
            if record.get(key) is not None
        )
        self.log(
            f"{pass_name}/{kind}: {shown}, requests {record['requests']} (load {load})"
            + (
                ""
                if complete
                else f" INCOMPLETE: {in_place}/{len(objects.objects)} in place, "
                f"{bad} MD5 mismatches, exit {status}{', capped' if capped else ''}"
            )
        )


def run_measured(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, output: Any, cap_seconds: float
) -> tuple[int, float, float, int, bool]:
    """Start ``argv``, wait for its exit; (exit status, wall seconds, CPU seconds of it and its
    reaped children, peak RSS KiB, killed at the cap).

    Peak RSS is the process's own ``VmHWM`` read every ``HWM_SAMPLE_SECONDS`` until it exits
    (and the tree's summed ``VmRSS`` every ``TREE_SAMPLE_SECONDS``, for a contestant with
    children), not ``wait4``'s ``ru_maxrss``: Linux carries the high-water mark of the memory
    an exec replaces into ``ru_maxrss``, and that memory was a fork of this (larger) process.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output
    )
    own_peak = tree_peak = 0
    capped = False
    next_tree = started
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        own_peak = max(own_peak, hwm_kib(proc.pid))
        now = time.monotonic()
        if now >= next_tree:
            tree_peak = max(tree_peak, tree_rss_kib(proc.pid))
            next_tree = now + TREE_SAMPLE_SECONDS
        if now - started > cap_seconds and not capped:
            capped = True
            proc.kill()
        time.sleep(HWM_SAMPLE_SECONDS)
    elapsed = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, elapsed, cpu, max(own_peak, tree_peak), capped


def hwm_kib(pid: int) -> int:
    """``VmHWM`` of ``pid`` (0 when it is gone, or a zombie without memory)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    """VmRSS of ``root`` and every descendant now, summed (0 once it is gone)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def check_folder(folder: Path, objects: Objects, *, sample: int) -> tuple[int, int]:
    """(objects at their path with their size, MD5 mismatches in a sample of them)."""
    present = []
    for key, (size, _) in objects.objects.items():
        try:
            if (folder / key).stat().st_size == size:
                present.append(key)
        except OSError:
            continue
    chosen = random.Random(len(present)).sample(present, min(sample, len(present)))
    bad = 0
    for key in chosen:
        digest = hashlib.md5(usedforsecurity=False)
        with open(folder / key, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        bad += digest.hexdigest() != objects.objects[key][1]
    return len(present), bad


# ---- the passes -----------------------------------------------------------------------------


def order(kinds: Sequence[str], turn: int) -> list[str]:
    """The contestants in turn ``turn``: one order, then reversed, so that neither the first
    nor the last place (a warmer or a more loaded machine) always falls to the same one."""
    return list(kinds) if turn % 2 == 0 else list(kinds)[::-1]


def run_passes(bench: Bench) -> None:
    plan = bench.plan
    emulator = bench.emulator
    s3 = emulator.client("s3")
    kinds = bench.kinds

    small = Objects(bucket=emulator.unique("sync-small"))
    s3.create_bucket(Bucket=small.bucket)
    bench.put(small, "s", range(plan.small_count), plan.small_size)
    folders: dict[str, Path] = {}
    for turn in range(plan.repeat):
        for kind in order(kinds, turn):
            folders[kind] = Path(tempfile.mkdtemp(prefix=f"small-{kind}-", dir=bench.workdir))
            bench.run("small", kind, small, folders[kind], files=plan.small_count)

    large = Objects(bucket=emulator.unique("sync-large"))
    s3.create_bucket(Bucket=large.bucket)
    bench.put(large, "l", range(plan.large_count), plan.large_size)
    for turn in range(plan.repeat):
        for kind in order(kinds, turn + 1):
            folder = Path(tempfile.mkdtemp(prefix=f"large-{kind}-", dir=bench.workdir))
            bench.run("large", kind, large, folder, files=plan.large_count)
            remove_unless_many(folder)
    delete_objects(emulator, large)

    added = plan.noop_count - plan.small_count
    bench.put(small, "s", range(plan.small_count, plan.noop_count), plan.small_size)
    for kind in kinds:
        bench.run("top-up", kind, small, folders[kind], files=added)
    noop_kinds = [*kinds, *(k for k in NOOP_ONLY if "rclone" in kinds)]
    if "rclone-mtime" in noop_kinds:
        folders["rclone-mtime"] = folders["rclone"]
    for turn in range(plan.repeat):
        for kind in order(noop_kinds, turn + 1):
            bench.run("no-op", kind, small, folders[kind], files=0)


def delete_objects(emulator: EmulatorProcess, objects: Objects) -> None:
    """Free the emulator's copy of a bucket's objects (the large ones take its memory)."""
    s3 = emulator.client("s3")
    for key in objects.objects:
        s3.delete_object(Bucket=objects.bucket, Key=key)


def versions(aws: str, rclone: str, kinds: Sequence[str]) -> dict[str, str]:
    found = {}
    for kind, argv in (("aws", [aws, "--version"]), ("rclone", [rclone, "version"])):
        if kind in kinds:
            out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
            found[kind] = (out.stdout or out.stderr).strip().splitlines()[0]
    return found


# ---- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each pass (medians shown)")
    parser.add_argument("--workers", type=int, default=None, help="concurrency of each (8)")
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--aws", default=str(DEFAULT_AWS), help="the aws command")
    parser.add_argument("--rclone", default="rclone", help="the rclone command")
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "sync-latest.json", help="output"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (a temp dir)")
    parser.add_argument(
        "--s3sqsd-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra s3sqsd config key (YAML value), e.g. "
        "'large_objects={threshold_bytes: 134217728}'; repeatable",
    )
    parser.add_argument(
        "--ablate",
        default="",
        metavar="VARIANTS",
        help="also run s3sqsd with these parts taken out (bench/ablate.py's variants, e.g. "
        "fsync or fsync,log), from a copy of this checkout: a measure of what they cost, not a "
        "product",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="run s3sqsd under py-spy (collapsed stacks in DIR, one file per run; summarise "
        "with python -m bench.profile_summary); the figures of such a run are perturbed",
    )
    args = parser.parse_args(argv)
    try:
        s3sqsd_extra = config_overrides(args.s3sqsd_config)
    except ValueError as exc:
        parser.error(str(exc))
    plan = Plan.quick() if args.quick else Plan()
    plan = dataclasses.replace(plan, repeat=args.repeat, workers=args.workers or plan.workers)
    for name in ("aws", "rclone"):  # a path relative to where the command was started
        if os.sep in getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    wanted = [k.strip() for k in args.contestants.split(",") if k.strip()]
    for name in wanted:
        if name not in CONTESTANTS:
            parser.error(f"unknown contestant {name!r}")
    kinds = []
    skipped = {}
    for kind in wanted:
        reason = missing(kind, aws=args.aws, rclone=args.rclone)
        if reason is None:
            kinds.append(kind)
        else:
            skipped[kind] = reason
            print(f"skipped {kind}: {reason}", file=sys.stderr, flush=True)
    info = machine()
    info["command"] = " ".join(["python -m bench.sync", *sys.argv[1:]])
    info["versions"].update(versions(args.aws, args.rclone, kinds))
    workdir = Path(tempfile.mkdtemp(prefix="s3sqsd-bench-sync-", dir=args.workdir))
    ablated = {}
    if args.ablate:
        variants = [v.strip() for v in args.ablate.split(",") if v.strip()]
        name = "s3sqsd-no-" + "-".join(variants)
        ablated[name] = workdir / "ablated"
        copy_tree(ablated[name])
        ablate(ablated[name], variants)  # stops here when an edit no longer applies
        kinds.insert(kinds.index("s3sqsd") + 1 if "s3sqsd" in kinds else 0, name)
    emulator = EmulatorProcess()
    started = time.monotonic()
    bench = Bench(
        plan=plan,
        emulator=emulator,
        workdir=workdir,
        aws=args.aws,
        rclone=args.rclone,
        kinds=kinds,
        skipped=skipped,
        profile_dir=args.profile,
        ablated=ablated,
        s3sqsd_extra=s3sqsd_extra,
    )
    try:
        bench.log(f"emulator {emulator.endpoint} (pid {emulator.pid}); workdir {workdir}")
        try:
            run_passes(bench)
        except KeyboardInterrupt:
            bench.log("interrupted: reporting what was measured")
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_end"] = loadavg()
    info["duration_s"] = round(time.monotonic() - started, 1)
    rows = summarise(bench.results)
    checks = judge(rows)
    report = {
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "s3sqsd_config": s3sqsd_extra,
        "skipped": skipped,
        "rows": rows,
        "targets": checks,
        "runs": bench.results,
    }
    notes = [f"skipped {kind}: {reason}" for kind, reason in skipped.items()]
    print_report(args.json, report, table(rows), notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
