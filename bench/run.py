"""Benchmark s3sqsd against the script it replaces and against the raw Python + boto3 floor.

    python -m bench.run                      # everything (about 21 minutes on 2 cores)
    python -m bench.run --quick              # a smoke run of every workload (2-3 minutes)
    python -m bench.run --workloads a,d --networks loopback --repeat 3
    python -m bench.run --workloads a --networks loopback,rtt20,rtt50,rtt100 \
        --workers 8,16,32,64 --contestants limit,s3sqsd --repeat 2     # a concurrency sweep

Run from the repository root. Side by side, in one run, on this machine: the emulator (moto's
server with the fixes in ``tests/support/emulator_server.py``) in its own process on 127.0.0.1,
and the contestants as processes:

- ``original``: ``bench/original.py``, the replaced script's algorithm;
- ``limit``: ``bench/limit.py``, receive(10) / GET to a file / delete-batch at s3sqsd's
  concurrency, nothing else;
- ``s3sqsd``: ``python -m s3sqsd`` with its default config plus endpoint and ``--workers``;
- ``download_file``: ``bench/transfer.py``, boto3's s3transfer (large-object workloads only).

Workloads: (a) N small objects queued up front, (b) 8 objects of 256 MiB, (c) one 1 GiB object,
(d) a steady trickle of PUTs (latency from PUT to file), (e) idle, (f) 4 objects of 1 GiB queued
ahead of the N small ones (issue #17: do large downloads starve small files?), with (f0) the
same small files alone right before or after, for the comparison. Networks: ``loopback``, and
``rtt20``, ``rtt50``, ``rtt100`` (every request of the contestant through
``bench/delay_proxy.py``, 10, 25 or 50 ms each way). ``--workers 8,16,32`` runs a and f at each
concurrency, interleaved (a sweep). Prints a Markdown table and the targets of issues #5 and
#17, and writes everything measured as JSON (``--json``). Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.config

from bench.harness import (
    BENCH_DIR,
    POOL_FULL,
    Contestant,
    DelayProxy,
    FileWatcher,
    ProcSample,
    config_overrides,
    cpu_seconds_precise,
    environment_for_tools,
    fmt,
    loadavg,
    machine,
    print_report,
    proc_sample,
    remove_unless_many,
)
from tests.support.daemon import REPO_ROOT, receive_all
from tests.support.emulator_server import EmulatorProcess

MIB = 1 << 20
CONTESTANTS = ("original", "limit", "s3sqsd")
# The delay the proxy adds in each direction, per network (the round trip is about twice it).
# rtt20 is S3 in the same region, rtt50 and rtt100 another region or an on-premises host.
NETWORK_DELAYS_MS = {"rtt20": 10.0, "rtt50": 25.0, "rtt100": 50.0}
NETWORKS = ("loopback", *NETWORK_DELAYS_MS)


@dataclass(frozen=True)
class Plan:
    small_count: int = 2000
    small_size: int = 4096
    large_count: int = 8
    large_size: int = 256 * MIB
    huge_size: int = 1024 * MIB
    mixed_large_count: int = 4  # workload f: this many objects of huge_size ahead of the small
    trickle_rate: float = 20.0
    trickle_seconds: float = 30.0
    idle_seconds: float = 60.0
    cap_seconds: float = 300.0  # no run of one contestant lasts longer
    original_cap_seconds: float = 60.0  # the original on 2,000 files at 20 ms RTT: a sample
    workers: int = 8

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            small_count=200,
            large_count=2,
            large_size=16 * MIB,
            huge_size=64 * MIB,  # still ranged: s3sqsd's large_objects threshold is 64 MiB
            mixed_large_count=2,
            trickle_seconds=5.0,
            idle_seconds=10.0,
            cap_seconds=60.0,
            original_cap_seconds=8.0,
        )


@dataclass
class Context:
    plan: Plan
    emulator: EmulatorProcess
    endpoints: dict[str, str]  # network name -> endpoint the contestants use
    proxies: dict[str, DelayProxy]  # network name -> its delay proxy (not loopback)
    workdir: Path
    contestants: Sequence[str]
    profile_dir: Path | None = None
    s3sqsd_config: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    multipart_bytes: int = 0  # --multipart-mib: large objects as multipart uploads of this part
    multipart_checksum: str | None = None  # --multipart-checksum: the uploads' algorithm
    # --workers 8,16,32: each round runs every contestant at each of these (the original, which
    # has one thread whatever the setting, once per round)
    workers_sweep: tuple[int, ...] = ()

    def workers_list(self) -> tuple[int, ...]:
        return self.workers_sweep or (self.plan.workers,)

    def profile_path(self, contestant: Contestant, *parts: str) -> None:
        """With ``--profile``: record s3sqsd and limit with py-spy into ``profile_dir``."""
        if self.profile_dir is None or contestant.kind not in ("s3sqsd", "limit"):
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        name = "-".join([*parts, contestant.kind, str(len(self.results))])
        contestant.profile = self.profile_dir / f"{name}.txt"

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---- objects and queues ---------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSet:
    bucket: str
    keys: tuple[str, ...]
    size: int
    bodies: tuple[str, ...]  # the notifications S3 sent for them
    dlq_arn: str

    @property
    def total_bytes(self) -> int:
        return self.size * len(self.keys)


def put_multipart(
    remote: EmulatorProcess,
    bucket: str,
    key: str,
    data: bytes,
    *,
    part: int,
    algorithm: str | None,
) -> None:
    """A multipart upload in parts of ``part`` bytes. Without ``algorithm``, as SDKs before 2025
    made them: s3sqsd can verify such an object only by its part MD5s (``md5-parts``), the
    costliest check it makes (moto adds no default checksum; AWS adds a CRC64NVME). With one
    (CRC32), a composite checksum, verified part by part (``crc32-composite``)."""
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    try:
        config = botocore.config.Config(request_checksum_calculation="when_required")
    except TypeError:  # botocore < 1.36 adds no checksum anyway
        config = botocore.config.Config()
    s3 = remote.client("s3", config=config)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    done = []
    for number, start in enumerate(range(0, len(data), part), start=1):
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=number,
            Body=data[start : start + part],
            **extra,
        )
        done.append({"ETag": answer["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )


def make_objects(ctx: Context, prefix: str, count: int, size: int) -> ObjectSet:
    """PUT ``count`` objects into a fresh bucket wired to a capture queue; keep the events."""
    remote = ctx.emulator
    pipeline = remote.pipeline(redrive=True)
    s3 = remote.client("s3")
    keys = tuple(f"{prefix}-{i:05d}.bin" for i in range(count))
    started = time.monotonic()
    if size <= MIB:
        body = os.urandom(size)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=pipeline.bucket, Key=k, Body=body), keys))
    else:
        for key in keys:
            data = os.urandom(size)
            if ctx.multipart_bytes and size > ctx.multipart_bytes:
                put_multipart(
                    remote,
                    pipeline.bucket,
                    key,
                    data,
                    part=ctx.multipart_bytes,
                    algorithm=ctx.multipart_checksum,
                )
            else:
                s3.put_object(Bucket=pipeline.bucket, Key=key, Body=data)
            del data
    sqs = remote.client("sqs")
    multipart = bool(ctx.multipart_bytes) and size > ctx.multipart_bytes
    # moto announces a multipart upload twice (ObjectCreated:Put and :CompleteMultipartUpload,
    # tests/support/emulator.py); AWS sends the second only, and so does this replay.
    announced = 2 * count if multipart else count
    messages = receive_all(sqs, pipeline.queue_url, count=announced, timeout=120)
    if multipart:
        messages = [m for m in messages if "CompleteMultipartUpload" in m["Body"]]
        assert len(messages) == count, f"{len(messages)} CompleteMultipartUpload events"
    sqs.delete_queue(QueueUrl=pipeline.queue_url)
    ctx.log(f"{count} x {size} B objects in {pipeline.bucket} in {time.monotonic() - started:.1f}s")
    assert pipeline.dlq_url is not None
    dlq_arn = sqs.get_queue_attributes(QueueUrl=pipeline.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return ObjectSet(
        bucket=pipeline.bucket,
        keys=keys,
        size=size,
        bodies=tuple(m["Body"] for m in messages),
        dlq_arn=dlq_arn,
    )


def delete_bucket(ctx: Context, bucket: str) -> None:
    s3 = ctx.emulator.client("s3")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


def fill_queue(ctx: Context, *sets: ObjectSet) -> str:
    """A fresh queue holding the events of ``sets``, in that order (each set's in its own)."""
    remote = ctx.emulator
    queue_url, _ = remote.create_queue(remote.unique("bench"), dlq_arn=sets[0].dlq_arn)
    sqs = remote.client("sqs")
    bodies = [body for objects in sets for body in objects.bodies]
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    return queue_url


@contextlib.contextmanager
def scratch_folder(ctx: Context, name: str) -> Iterator[Path]:
    """A fresh download folder for one run. Folders of a few large files are removed at once
    (disk space); folders of many small files stay until the whole workdir goes at the end
    (``harness.REMOVE_AT_ONCE_MAX_FILES`` says why)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.workdir))
    try:
        yield folder
    finally:
        remove_unless_many(folder)


# ---- measuring one contestant ---------------------------------------------------------------


def _cpu(a: ProcSample, b: ProcSample) -> float:
    return b.cpu_seconds - a.cpu_seconds


def latency_figures(
    seen: dict[str, float], keys: Sequence[str], since: float, size: int
) -> dict[str, Any]:
    """For the files of ``keys`` that appeared (``seen``: inotify times), their latency from
    ``since`` (ms; p50, p99, max), and the rate of the set from ``since`` to the last of them."""
    latencies = sorted((seen[k] - since) * 1000 for k in keys if k in seen)
    if not latencies:
        return {"files_seen": 0}
    last = latencies[-1] / 1000
    return {
        "files_seen": len(latencies),
        "latency_p50_ms": _percentile(latencies, 50),
        "latency_p99_ms": _percentile(latencies, 99),
        "latency_max_ms": latencies[-1],
        "files_per_s": len(latencies) / last if last > 0 else None,
        "mb_per_s": len(latencies) * size / MIB / last if last > 0 else None,
    }


def workers_figures(changes: Sequence[dict[str, Any]], ready_at: float) -> dict[str, Any]:
    """Where a ``workers: auto`` contestant's controller went, from its ``concurrency.changed``
    log records (``_t``: when the bench read the line, monotonic): ``workers_path`` as
    ``[seconds since READY, workers, reason]`` per change, the target it started from, the one
    it ended at and the highest it reached. Without changes (fixed workers, the floor, or a
    target that never moved) the path is empty and the figures None."""
    path = [
        [round(float(r.get("_t", ready_at)) - ready_at, 2), int(r["workers"]), r.get("reason")]
        for r in changes
        if isinstance(r.get("workers"), int)
    ]
    if not path:
        return {
            "workers_path": [],
            "workers_first": None,
            "workers_final": None,
            "workers_max": None,
        }
    first = next((r.get("previous") for r in changes if isinstance(r.get("workers"), int)), None)
    first = first if isinstance(first, int) else None
    return {
        "workers_path": path,
        "workers_first": first,
        "workers_final": path[-1][1],
        "workers_max": max([w for _, w, _ in path] + ([first] if first is not None else [])),
    }


def workers_trail(record: dict[str, Any]) -> str | None:
    """The targets a run's controller went through, for its progress line (``8>16>32``):
    the first change's previous target, then each new one."""
    path = record.get("workers_path") or []
    if not path:
        return None
    first = record.get("workers_first")
    steps = [str(first)] if first is not None else []
    return ">".join(steps + [str(w) for _, w, _ in path])


def run_queued(
    ctx: Context,
    kind: str,
    network: str,
    objects: ObjectSet,
    workload: str,
    *,
    workers: int | None = None,
    first: ObjectSet | None = None,
) -> None:
    """Queue every event up front, start ``kind``, time it until every message is deleted.

    With ``first`` (workload f), that set's events are queued ahead of ``objects``'; the row's
    files/s and latency are then ``objects``' (the small files), its MB/s ``first``'s."""
    plan = ctx.plan
    workers = workers or plan.workers
    cap = plan.original_cap_seconds if kind == "original" and network != "loopback" else 0
    cap = cap or plan.cap_seconds
    sets = [first, objects] if first is not None else [objects]
    queue_url = fill_queue(ctx, *sets)
    count = sum(len(s.keys) for s in sets)
    largest = max(s.size for s in sets)
    proxy = ctx.proxies.get(network)
    load = loadavg()
    with scratch_folder(ctx, f"{workload}-{kind}") as folder:
        watcher = FileWatcher(folder, [k for s in sets for k in s.keys])
        contestant = Contestant(
            kind,
            endpoint=ctx.endpoints[network],
            queue_url=queue_url,
            bucket=objects.bucket,
            folder=folder,
            workdir=ctx.workdir,
            workers=workers,
            extra_config=ctx.s3sqsd_config,
        )
        ctx.profile_path(contestant, workload, network)
        connected = ctx.emulator.requests().get("connections", 0)
        try:
            s0 = contestant.start()
            e0 = proc_sample(ctx.emulator.pid)
            r0 = ctx.emulator.requests()
            p0 = proc_sample(proxy.pid) if proxy else None
            peak = s0.hwm_kib
            interval = 0.02 if largest <= MIB else 0.1
            deleted = 0
            while True:
                deleted = ctx.emulator.queue_stats(queue_url)["delete"]
                now = time.monotonic()
                if deleted >= count or now - contestant.ready_at > cap:
                    break
                if contestant.process.proc and contestant.process.proc.poll() is not None:
                    break
                if largest > MIB:
                    peak = max(peak, proc_sample(contestant.pid).hwm_kib)
                time.sleep(interval)
            s1 = proc_sample(contestant.pid)
            e1 = proc_sample(ctx.emulator.pid)
            p1 = proc_sample(proxy.pid) if proxy else None
            stats = ctx.emulator.queue_stats(queue_url)
            r1 = ctx.emulator.requests()
            # only the changes up to the end of the measured run (not those of the drain)
            changes = [
                r
                for r in contestant.process.events("concurrency.changed")
                if float(r.get("_t", 0.0)) <= s1.at
            ]
            contestant.stop()
        finally:
            contestant.cleanup()
            watcher.close()
        elapsed = s1.at - contestant.ready_at
        complete = [
            k
            for s in sets
            for k in s.keys
            if (folder / k).is_file() and (folder / k).stat().st_size == s.size
        ]
        seen = dict(watcher.seen)
        if first is not None:  # the large files go now (disk space), the small ones stay
            for key in first.keys:
                (folder / key).unlink(missing_ok=True)
        done = min(deleted, len(complete))
        requests = {k: v - r0.get(k, 0) for k, v in r1.items() if v - r0.get(k, 0)}
        record: dict[str, Any] = {
            "workload": workload,
            "network": network,
            "contestant": kind,
            "workers": None if kind == "original" else workers,
            "load_average": load,
            "files": count,
            "files_done": done,
            "files_on_disk": len(complete),
            "capped": deleted < count,
            "seconds": elapsed,
            "files_per_s": done / elapsed if elapsed > 0 else None,
            "mb_per_s": done * objects.size / MIB / elapsed if elapsed > 0 else None,
            "cpu_ms_per_file": _cpu(s0, s1) * 1000 / done if done else None,
            "cpu_sys_ms_per_file": (s1.sys_seconds - s0.sys_seconds) * 1000 / done
            if done
            else None,
            "cpu_core_share": _cpu(s0, s1) / elapsed if elapsed > 0 else None,
            "peak_rss_mib": max(peak, s1.hwm_kib) / 1024,
            "emulator_cpu_ms_per_file": _cpu(e0, e1) * 1000 / done if done else None,
            "proxy_cpu_ms_per_file": _cpu(p0, p1) * 1000 / done if p0 and p1 and done else None,
            "receive_calls": stats["receive"],
            "requests": requests,
            # TCP connections the emulator accepted from the contestant's start to the end of
            # the run (through a proxy: one per client connection); with keep-alive and pools
            # big enough, the most connections it had in use at once
            "connections": r1.get("connections", 0) - connected,
            "pool_discards": contestant.said(POOL_FULL),
            "ready_s": contestant.ready_seconds,
            "term_exit_s": contestant.exit_seconds,
            "exit_status": contestant.exit_status,
            "problems": contestant.problems()[:5],
            **workers_figures(changes, contestant.ready_at),
        }
        # Every event was queued before the contestant started: a file's latency is from the
        # contestant's readiness (READY=1) to the file at its final path.
        small = latency_figures(seen, objects.keys, contestant.ready_at, objects.size)
        record["latency_p50_ms"] = small.get("latency_p50_ms")
        record["latency_p99_ms"] = small.get("latency_p99_ms")
        record["latency_max_ms"] = small.get("latency_max_ms")
        if first is not None:
            large = latency_figures(seen, first.keys, contestant.ready_at, first.size)
            # how many small files were in place by the time the last large one was
            last_large = max((seen[k] for k in first.keys if k in seen), default=None)
            large["small_files_by_then"] = (
                sum(1 for k in objects.keys if k in seen and seen[k] <= last_large)
                if last_large is not None
                else None
            )
            record["small"] = small
            record["large"] = large
            record["files_per_s"] = small.get("files_per_s")
            record["mb_per_s"] = large.get("mb_per_s")
    ctx.emulator.client("sqs").delete_queue(QueueUrl=queue_url)
    ctx.results.append(record)
    ctx.log(_summary(record))


def run_transfer(ctx: Context, network: str, objects: ObjectSet, workload: str) -> None:
    """boto3's download_file on the same objects, one after the other."""
    load = loadavg()
    with scratch_folder(ctx, f"{workload}-download_file") as folder:
        out = subprocess.run(
            [
                sys.executable,
                str(BENCH_DIR / "transfer.py"),
                "--endpoint",
                ctx.endpoints[network],
                "--bucket",
                objects.bucket,
                "--folder",
                str(folder),
                *objects.keys,
            ],
            env=environment_for_tools(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=ctx.plan.cap_seconds + 120,
            check=True,
        )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    count = len(objects.keys)
    seconds = float(data["seconds"])
    record = {
        "workload": workload,
        "network": network,
        "contestant": "download_file",
        "workers": None,
        "load_average": load,
        "files": count,
        "files_done": count,
        "files_on_disk": count,
        "capped": False,
        "seconds": seconds,
        "files_per_s": count / seconds,
        "mb_per_s": data["bytes"] / MIB / seconds,
        "cpu_ms_per_file": data["cpu_seconds"] * 1000 / count,
        "cpu_core_share": data["cpu_seconds"] / seconds,
        "peak_rss_mib": data["peak_rss_kib"] / 1024,
    }
    ctx.results.append(record)
    ctx.log(_summary(record))


def run_trickle(ctx: Context, kind: str, network: str) -> None:
    """PUT objects at a steady rate; latency from each PUT's completion to its file."""
    plan = ctx.plan
    remote = ctx.emulator
    pipeline = remote.pipeline(redrive=True)
    count = int(plan.trickle_rate * plan.trickle_seconds)
    keys = [f"t-{i:05d}.bin" for i in range(count)]
    body = os.urandom(4096)
    s3 = remote.client("s3")
    s3.put_object(Bucket=pipeline.bucket, Key="warm-up.bin", Body=body)  # warm the client
    remote.drain(pipeline.queue_url)
    put_done: dict[str, float] = {}
    load = loadavg()
    with scratch_folder(ctx, f"d-{kind}") as folder:
        watcher = FileWatcher(folder, keys)
        contestant = Contestant(
            kind,
            endpoint=ctx.endpoints[network],
            queue_url=pipeline.queue_url,
            bucket=pipeline.bucket,
            folder=folder,
            workdir=ctx.workdir,
            workers=plan.workers,
            extra_config=ctx.s3sqsd_config,
        )
        ctx.profile_path(contestant, "d", network)
        try:
            s0 = contestant.start()
            time.sleep(1.0)  # let the first long poll start
            s0 = proc_sample(contestant.pid)
            started = time.monotonic()
            for i, key in enumerate(keys):
                delay = started + i / plan.trickle_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                s3.put_object(Bucket=pipeline.bucket, Key=key, Body=body)
                put_done[key] = time.monotonic()
            watcher.wait_for(count, timeout=30)
            s1 = proc_sample(contestant.pid)
            contestant.stop()
        finally:
            contestant.cleanup()
            watcher.close()
        seen = dict(watcher.seen)
    latencies = sorted((seen[k] - put_done[k]) * 1000 for k in keys if k in seen and k in put_done)
    elapsed = s1.at - s0.at
    record: dict[str, Any] = {
        "workload": "d",
        "network": network,
        "contestant": kind,
        "workers": None if kind == "original" else plan.workers,
        "load_average": load,
        "files": count,
        "files_done": len(latencies),
        "seconds": elapsed,
        "files_per_s": len(latencies) / elapsed,
        "cpu_ms_per_file": _cpu(s0, s1) * 1000 / len(latencies) if latencies else None,
        "cpu_core_share": _cpu(s0, s1) / elapsed,
        "peak_rss_mib": s1.hwm_kib / 1024,
        "latency_p50_ms": _percentile(latencies, 50),
        "latency_p99_ms": _percentile(latencies, 99),
        "latency_max_ms": latencies[-1] if latencies else None,
        "ready_s": contestant.ready_seconds,
        "term_exit_s": contestant.exit_seconds,
        "problems": contestant.problems()[:5],
    }
    delete_bucket(ctx, pipeline.bucket)
    sqs = remote.client("sqs")
    for url in (pipeline.queue_url, pipeline.dlq_url):
        if url:
            sqs.delete_queue(QueueUrl=url)
    ctx.results.append(record)
    ctx.log(_summary(record))


def run_idle(ctx: Context, network: str) -> None:
    """Every contestant at once on its own empty queue: CPU and ReceiveMessage calls, then stop."""
    plan = ctx.plan
    remote = ctx.emulator
    running: list[tuple[Contestant, str, Path]] = []
    load = loadavg()
    try:
        for kind in ctx.contestants:
            queue_url, _ = remote.create_queue(remote.unique("idle"))
            folder = Path(tempfile.mkdtemp(prefix=f"e-{kind}-", dir=ctx.workdir))
            contestant = Contestant(
                kind,
                endpoint=ctx.endpoints[network],
                queue_url=queue_url,
                bucket="none",
                folder=folder,
                workdir=ctx.workdir,
                workers=plan.workers,
                extra_config=ctx.s3sqsd_config,
            )
            running.append((contestant, queue_url, folder))
            contestant.start()
        time.sleep(2.0)  # start-up calls (GetQueueAttributes, first poll) are not idling
        before = [
            (time.monotonic(), cpu_seconds_precise(c.pid), ctx.emulator.queue_stats(q)["receive"])
            for c, q, _ in running
        ]
        time.sleep(plan.idle_seconds)
        after = [
            (time.monotonic(), cpu_seconds_precise(c.pid), ctx.emulator.queue_stats(q)["receive"])
            for c, q, _ in running
        ]
        peaks = [proc_sample(c.pid).hwm_kib for c, _, _ in running]
        for contestant, _, _ in running:
            contestant.stop()
    finally:
        for contestant, queue_url, folder in running:
            contestant.cleanup()
            remove_unless_many(folder)
            with contextlib.suppress(Exception):
                remote.client("sqs").delete_queue(QueueUrl=queue_url)
    for (contestant, _, _), (t0, c0, r0), (t1, c1, r1), peak in zip(
        running, before, after, peaks, strict=True
    ):
        record = {
            "workload": "e",
            "network": network,
            "contestant": contestant.kind,
            "workers": None if contestant.kind == "original" else plan.workers,
            "load_average": load,
            "seconds": t1 - t0,
            "idle_cpu_pct": (c1 - c0) / (t1 - t0) * 100,
            "receives_per_min": (r1 - r0) / ((t1 - t0) / 60),
            "receive_calls": r1 - r0,
            "peak_rss_mib": peak / 1024,
            "ready_s": contestant.ready_seconds,
            "term_exit_s": contestant.exit_seconds,
            "exit_status": contestant.exit_status,
            "problems": contestant.problems()[:5],
        }
        ctx.results.append(record)
        ctx.log(_summary(record))


# ---- reporting ------------------------------------------------------------------------------


def _percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    rank = max(0, min(len(values) - 1, round(pct / 100 * len(values) + 0.5) - 1))
    return sorted(values)[rank]


def _summary(r: dict[str, Any]) -> str:
    keys = (
        "files_per_s",
        "mb_per_s",
        "cpu_ms_per_file",
        "peak_rss_mib",
        "latency_p50_ms",
        "latency_p99_ms",
        "idle_cpu_pct",
        "receives_per_min",
        "ready_s",
        "term_exit_s",
    )
    shown = ", ".join(f"{k}={fmt(r[k], 3)}" for k in keys if r.get(k) is not None)
    trail = workers_trail(r)
    if trail:
        shown += f", workers={trail}"
    extra = " CAPPED" if r.get("capped") else ""
    problems = f" PROBLEMS {r['problems']}" if r.get("problems") else ""
    return f"{r['workload']}/{r['network']}/{r['contestant']}: {shown}{extra}{problems}"


COLUMNS: list[tuple[str, str, int]] = [
    ("files/s", "files_per_s", 1),
    ("MB/s", "mb_per_s", 1),
    ("CPU ms/file", "cpu_ms_per_file", 2),
    ("peak RSS MiB", "peak_rss_mib", 1),
    ("p50 ms", "latency_p50_ms", 0),
    ("p99 ms", "latency_p99_ms", 0),
    ("idle CPU %", "idle_cpu_pct", 3),
    ("receives/min", "receives_per_min", 2),
    ("READY s", "ready_s", 2),
    ("TERM→exit s", "term_exit_s", 2),
    ("emulator CPU ms/file", "emulator_cpu_ms_per_file", 2),
]

WORKLOAD_NAMES = {
    "a": "a: small files queued",
    "b": "b: 8 large objects",
    "c": "c: one huge object",
    "d": "d: trickle, latency",
    "e": "e: idle",
    "f0": "f0: the small files of f alone",
    "f": "f: small files behind large ones",
}


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, network, contestant, workers): the median of each figure over
    repeats."""
    groups: dict[tuple[str, str, str, int | None], list[dict[str, Any]]] = {}
    for r in results:
        group = (r["workload"], r["network"], r["contestant"], r.get("workers"))
        groups.setdefault(group, []).append(r)
    rows = []
    for (workload, network, contestant, workers), runs in groups.items():
        row: dict[str, Any] = {
            "workload": workload,
            "network": network,
            "contestant": contestant,
            "workers": workers,
            "runs": len(runs),
            "capped": any(r.get("capped") for r in runs),
        }
        for _, key, _ in [*COLUMNS, *EXTRA_MEDIANS]:
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rows.append(row)
    return rows


# Medians kept in the JSON's rows besides the table's columns.
EXTRA_MEDIANS: list[tuple[str, str, int]] = [
    ("proxy CPU ms/file", "proxy_cpu_ms_per_file", 2),
    ("connections", "connections", 0),
    ("pool discards", "pool_discards", 0),
    # where ``workers: auto`` ended and the most it reached (None with fixed workers)
    ("workers at the end", "workers_final", 0),
    ("most workers", "workers_max", 0),
]


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table; with more than one ``workers`` value among the rows (a sweep), a
    workers column and the connections and pool discards of each row."""
    sweep = len({row.get("workers") for row in rows if row.get("workers") is not None}) > 1
    columns = [*COLUMNS, *(EXTRA_MEDIANS[1:] if sweep else [])]
    header = ["workload", "network", "contestant", *(["workers"] if sweep else [])]
    header += [c[0] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = row["contestant"] + (" (capped)" if row.get("capped") else "")
        if row["runs"] > 1:
            name += f" x{row['runs']}"
        cells = [WORKLOAD_NAMES.get(row["workload"], row["workload"]), row["network"], name]
        if sweep:
            cells.append(fmt(row.get("workers")))
        cells += [fmt(row.get(key), digits) for _, key, digits in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _get(
    rows: list[dict[str, Any]],
    workload: str,
    network: str,
    who: str,
    key: str,
    workers: int | None = None,
) -> Any:
    """The row's figure; with ``workers``, only a row at that concurrency (or one that has
    none: the original, download_file)."""
    for row in rows:
        if (row["workload"], row["network"], row["contestant"]) != (workload, network, who):
            continue
        if workers is not None and row.get("workers") not in (None, workers):
            continue
        return row.get(key)
    return None


def targets(
    rows: list[dict[str, Any]], results: list[dict[str, Any]], workers: int | None = None
) -> list[dict[str, Any]]:
    """Issues #5's and #17's targets, each with the figures it was judged on (None: not
    measured). With ``workers`` (a sweep), judged on the rows at that concurrency."""
    out: list[dict[str, Any]] = []

    def ratio(name: str, value: Any, reference: Any, bound: float, at_least: bool) -> None:
        if value is None or reference in (None, 0):
            out.append({"target": name, "met": None, "detail": "not measured in this run"})
            return
        r = value / reference
        met = r >= bound if at_least else r <= bound
        out.append(
            {
                "target": name,
                "met": met,
                "detail": f"{value:,.2f} / {reference:,.2f} = {r:.2f} (bound {bound})",
            }
        )

    def absolute(name: str, value: Any, bound: float) -> None:
        if value is None:
            out.append({"target": name, "met": None, "detail": "not measured in this run"})
            return
        out.append({"target": name, "met": value <= bound, "detail": f"{value:,.3f} ≤ {bound}"})

    def g(rows: list[dict[str, Any]], workload: str, network: str, who: str, key: str) -> Any:
        return _get(rows, workload, network, who, key, workers)

    ratio(
        "a loopback: files/s ≥ 0.9 x limit",
        g(rows, "a", "loopback", "s3sqsd", "files_per_s"),
        g(rows, "a", "loopback", "limit", "files_per_s"),
        0.9,
        True,
    )
    ratio(
        "a loopback: CPU per file ≤ 1.3 x limit",
        g(rows, "a", "loopback", "s3sqsd", "cpu_ms_per_file"),
        g(rows, "a", "loopback", "limit", "cpu_ms_per_file"),
        1.3,
        False,
    )
    ratio(
        "a rtt20: files/s ≥ 25 x original",
        g(rows, "a", "rtt20", "s3sqsd", "files_per_s"),
        g(rows, "a", "rtt20", "original", "files_per_s"),
        25,
        True,
    )
    measured = {row["network"] for row in rows}
    for network in [n for n in NETWORK_DELAYS_MS if n in measured]:
        ratio(
            f"a {network}: files/s ≥ 0.9 x limit (same workers)",
            g(rows, "a", network, "s3sqsd", "files_per_s"),
            g(rows, "a", network, "limit", "files_per_s"),
            0.9,
            True,
        )
    for network in [n for n in NETWORKS if n in measured]:
        ratio(
            f"f {network}: small files' p99 ≤ 2 x their p99 alone (f0)",
            g(rows, "f", network, "s3sqsd", "latency_p99_ms"),
            g(rows, "f0", network, "s3sqsd", "latency_p99_ms"),
            2.0,
            False,
        )
        ratio(
            f"f {network}: small files/s ≥ 0.5 x alone (f0)",
            g(rows, "f", network, "s3sqsd", "files_per_s"),
            g(rows, "f0", network, "s3sqsd", "files_per_s"),
            0.5,
            True,
        )
    for workload in ("b", "c"):
        for network in ("loopback", "rtt20"):
            ratio(
                f"{workload} {network}: MB/s ≥ 0.9 x download_file",
                g(rows, workload, network, "s3sqsd", "mb_per_s"),
                g(rows, workload, network, "download_file", "mb_per_s"),
                0.9,
                True,
            )
    absolute(
        "c loopback: peak RSS ≤ 80 MiB (1 GiB object)",
        g(rows, "c", "loopback", "s3sqsd", "peak_rss_mib"),
        80,
    )
    absolute("d loopback: p50 ≤ 100 ms", g(rows, "d", "loopback", "s3sqsd", "latency_p50_ms"), 100)
    absolute("d loopback: p99 ≤ 500 ms", g(rows, "d", "loopback", "s3sqsd", "latency_p99_ms"), 500)
    absolute(
        "e: idle CPU ≤ 0.2 % of a core", g(rows, "e", "loopback", "s3sqsd", "idle_cpu_pct"), 0.2
    )
    absolute(
        "e: ≤ 3.5 ReceiveMessage calls/min per poller",
        g(rows, "e", "loopback", "s3sqsd", "receives_per_min"),
        3.5,
    )
    ready = [r["ready_s"] for r in results if r["contestant"] == "s3sqsd" and r.get("ready_s")]
    absolute("start to READY ≤ 1 s (median of every s3sqsd start)", _median(ready), 1.0)
    absolute("start to READY, slowest start", max(ready) if ready else None, 1.0)
    idle_exit = [
        r["term_exit_s"]
        for r in results
        if r["contestant"] == "s3sqsd" and r["workload"] == "e" and r.get("term_exit_s")
    ]
    absolute("SIGTERM to exit when idle ≤ 2 s", max(idle_exit) if idle_exit else None, 2.0)
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ---- main -----------------------------------------------------------------------------------


def sweep_order(
    kinds: Sequence[str], workers: Sequence[int], round_: int
) -> list[tuple[str, int | None]]:
    """The runs of one round: every contestant at every ``workers`` value (the original once:
    it has one thread whatever the setting), interleaved, in reverse order every other round."""
    order: list[tuple[str, int | None]] = []
    for count in workers:
        for kind in kinds:
            if kind == "original":
                if count == workers[0]:
                    order.append((kind, None))
            else:
                order.append((kind, count))
    return order if round_ % 2 == 0 else order[::-1]


def run_workloads(
    ctx: Context, workloads: Sequence[str], networks: Sequence[str], repeats: dict[str, int]
) -> None:
    plan = ctx.plan
    kinds = list(ctx.contestants)

    for workload in workloads:
        repeat = repeats.get(workload, repeats.get("*", 1))

        def rounds(body: Callable[[str, int], None], repeat: int = repeat) -> None:
            for network in networks:
                for i in range(repeat):
                    body(network, i)

        ctx.log(f"workload {workload} (load average {loadavg()})")
        if workload == "a":
            objects = make_objects(ctx, "a", plan.small_count, plan.small_size)
            try:

                def small(network: str, i: int, objects: ObjectSet = objects) -> None:
                    for kind, workers in sweep_order(kinds, ctx.workers_list(), i):
                        run_queued(ctx, kind, network, objects, "a", workers=workers)

                rounds(small)
            finally:
                delete_bucket(ctx, objects.bucket)
        elif workload in ("b", "c"):
            count, size = (
                (plan.large_count, plan.large_size) if workload == "b" else (1, plan.huge_size)
            )
            objects = make_objects(ctx, workload, count, size)
            try:

                def large(
                    network: str, i: int, objects: ObjectSet = objects, workload: str = workload
                ) -> None:
                    order = [*kinds, "download_file"]
                    for kind in order if i % 2 == 0 else order[::-1]:
                        if kind == "download_file":
                            run_transfer(ctx, network, objects, workload)
                        else:
                            run_queued(ctx, kind, network, objects, workload)

                rounds(large)
            finally:
                delete_bucket(ctx, objects.bucket)
        elif workload == "f":
            # The large objects' events first in the queue: the question is whether a few large
            # downloads starve the small files queued behind them.
            ahead = make_objects(ctx, "f-large", plan.mixed_large_count, plan.huge_size)
            behind = make_objects(ctx, "f-small", plan.small_count, plan.small_size)
            try:

                def mixed(
                    network: str, i: int, ahead: ObjectSet = ahead, behind: ObjectSet = behind
                ) -> None:
                    # Each contestant on the small files alone (f0), then behind the large ones
                    # (f), so the two latencies compared come from the same minutes.
                    runs = [
                        (kind, workers, label)
                        for kind, workers in sweep_order(
                            [k for k in kinds if k != "original"], ctx.workers_list(), 0
                        )
                        for label in ("f0", "f")
                    ]
                    for kind, workers, label in runs if i % 2 == 0 else runs[::-1]:
                        first = ahead if label == "f" else None
                        run_queued(ctx, kind, network, behind, label, workers=workers, first=first)

                rounds(mixed)
            finally:
                delete_bucket(ctx, ahead.bucket)
                delete_bucket(ctx, behind.bucket)
        elif workload == "d":
            rounds(lambda network, i: [run_trickle(ctx, kind, network) for kind in kinds])
        elif workload == "e":
            rounds(lambda network, i: run_idle(ctx, network))
        else:
            raise SystemExit(f"unknown workload {workload!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Workloads: " + "; ".join(WORKLOAD_NAMES.values()),
    )
    parser.add_argument("--workloads", default="a,b,c,d,e,f", help="comma-separated: a,b,c,d,e,f")
    parser.add_argument(
        "--networks", default="loopback,rtt20", help="comma-separated: " + ",".join(NETWORKS)
    )
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, 2-3 min")
    parser.add_argument(
        "--repeat",
        default="1",
        help="runs of each workload, the table shows medians: N for all, or a=3,b=1,*=1",
    )
    parser.add_argument(
        "--workers",
        default=None,
        help="download threads (8); a comma-separated list (8,16,32,64) runs workloads a and f "
        "at each, interleaved: a sweep",
    )
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "latest.json", help="output file"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (a temp dir)")
    parser.add_argument(
        "--multipart-mib",
        type=int,
        default=0,
        metavar="N",
        help="upload the large objects (b, c) as multipart uploads of N MiB parts, so s3sqsd "
        "verifies them part by part; 0: single PUTs",
    )
    parser.add_argument(
        "--multipart-checksum",
        choices=("none", "CRC32", "SHA256"),
        default="none",
        help="with --multipart-mib: the uploads' checksum (composite); none: only the "
        "multipart ETag (md5-parts)",
    )
    parser.add_argument(
        "--s3sqsd-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra s3sqsd config key (YAML value), e.g. log_level=warning; repeatable",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record s3sqsd and limit with py-spy (collapsed stacks in DIR; summarise with "
        "bench/profile_summary.py); the figures of such a run are perturbed",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    sweep: tuple[int, ...] = ()
    if args.workers:
        try:
            sweep = tuple(int(w) for w in args.workers.split(",") if w.strip())
        except ValueError:
            parser.error(f"--workers {args.workers!r}: expected N or N,N,...")
        if not sweep or min(sweep) < 1:
            parser.error(f"--workers {args.workers!r}: expected N or N,N,...")
        plan = Plan(**{**plan.__dict__, "workers": sweep[0]})
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    contestants = [c.strip() for c in args.contestants.split(",") if c.strip()]
    for name in networks:
        if name not in NETWORKS:
            parser.error(f"unknown network {name!r}")
    for name in contestants:
        if name not in CONTESTANTS:
            parser.error(f"unknown contestant {name!r}")
    try:
        extra_config = config_overrides(args.s3sqsd_config)
    except ValueError as exc:
        parser.error(str(exc))
    repeats: dict[str, int] = {}
    for part in args.repeat.split(","):
        name, _, value = part.rpartition("=")
        repeats[name.strip() or "*"] = int(value)
    info = machine()
    info["command"] = " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]])
    workdir = Path(tempfile.mkdtemp(prefix="s3sqsd-bench-", dir=args.workdir))
    emulator = EmulatorProcess()
    proxies: dict[str, DelayProxy] = {}
    started = time.monotonic()
    try:
        endpoints = {"loopback": emulator.endpoint}
        for name in networks:
            if name in NETWORK_DELAYS_MS:
                proxies[name] = DelayProxy(emulator.endpoint, NETWORK_DELAYS_MS[name])
                endpoints[name] = proxies[name].url
        ctx = Context(
            plan=plan,
            emulator=emulator,
            endpoints=endpoints,
            proxies=proxies,
            workdir=workdir,
            contestants=contestants,
            profile_dir=args.profile,
            s3sqsd_config=extra_config,
            multipart_bytes=args.multipart_mib * MIB,
            multipart_checksum=None
            if args.multipart_checksum == "none"
            else args.multipart_checksum,
            workers_sweep=sweep if len(sweep) > 1 else (),
        )
        ctx.log(f"emulator {emulator.endpoint} (pid {emulator.pid}); workdir {workdir}")
        try:
            run_workloads(ctx, workloads, networks, repeats)
        except KeyboardInterrupt:
            ctx.log("interrupted: reporting what was measured")
    finally:
        for proxy in proxies.values():
            proxy.stop()
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_end"] = loadavg()
    info["duration_s"] = round(time.monotonic() - started, 1)
    rows = summarise(ctx.results)
    checks = targets(rows, ctx.results, plan.workers if sweep else None)
    report = {
        "machine": info,
        "plan": plan.__dict__,
        "network_delays_ms": {n: NETWORK_DELAYS_MS[n] for n in networks if n in NETWORK_DELAYS_MS},
        "workers_sweep": list(sweep),
        "s3sqsd_config": extra_config,
        "multipart_mib": args.multipart_mib,
        "multipart_checksum": args.multipart_checksum,
        "rows": rows,
        "targets": checks,
        "runs": ctx.results,
    }
    print_report(args.json, report, table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
