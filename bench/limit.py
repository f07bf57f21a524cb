"""The floor for Python + boto3: the same concurrency as s3sqsd, none of its work.

``--pollers`` receiver threads (1, as s3sqsd's default ``pollers``) long-poll ``ReceiveMessage``
(up to 10, as many as there is room for: ``workers`` plus a prefetch of ``min(workers, 10)``,
s3sqsd's capacity, shared by the receivers), ``workers`` threads GET each object straight into
its final file (1 MiB reads, no temp file, no checks, no fsync, no provenance, no logging), and
as many deleter threads as receivers (the main thread and ``pollers - 1`` others) delete
finished messages with ``DeleteMessageBatch``, up to ten per call, one call at a time each.
Room comes back when a download is done, not when its delete returns, as in s3sqsd. No parsing
beyond pulling bucket and key out of the body (the keys the benchmark uses need no decoding);
botocore's own response checksum validation is off
(``response_checksum_validation="when_required"``; older botocore never validates).

``python -m bench.limit --queue-url URL --folder DIR --endpoint URL [--workers 8]
[--pollers 1]``; prints ``{"event": "ready"}`` once its clients exist; SIGTERM stops it
(in-flight work is dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
from typing import Any

import boto3
from botocore.config import Config


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pollers", type=int, default=1, help="receivers, and deleters")
    args = parser.parse_args()
    workers = args.workers
    capacity = workers + min(workers, 10)
    common: dict[str, Any] = {"region_name": args.region, "endpoint_url": args.endpoint}
    options: dict[str, Any] = {"s3": {"addressing_style": "path"}}
    options["max_pool_connections"] = workers + 2
    try:  # botocore >= 1.36 validates response checksums unless told not to
        config = Config(**options, response_checksum_validation="when_required")
    except TypeError:  # older botocore (Debian bookworm's) never does
        config = Config(**options)
    s3 = boto3.client("s3", **common, config=config)
    sqs_pool = Config(max_pool_connections=max(10, args.pollers + 2))
    sqs_receive = boto3.client("sqs", **common, config=sqs_pool)
    sqs_delete = boto3.client("sqs", **common, config=sqs_pool)
    stop = threading.Event()
    room = threading.Semaphore(capacity)
    todo: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    done: queue.SimpleQueue[str] = queue.SimpleQueue()

    def receiver() -> None:
        while not stop.is_set():
            room.acquire()
            wanted = 1
            while wanted < 10 and room.acquire(blocking=False):
                wanted += 1
            messages = sqs_receive.receive_message(
                QueueUrl=args.queue_url, MaxNumberOfMessages=wanted, WaitTimeSeconds=20
            ).get("Messages", [])
            for _ in range(wanted - len(messages)):
                room.release()
            for message in messages:
                todo.put(message)

    def downloader() -> None:
        while True:
            message = todo.get()
            record = json.loads(message["Body"])["Records"][0]["s3"]
            bucket, key = record["bucket"]["name"], record["object"]["key"]
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with open(os.path.join(args.folder, key), "wb") as handle:
                while chunk := body.read(1 << 20):
                    handle.write(chunk)
            done.put(message["ReceiptHandle"])
            room.release()  # as s3sqsd: capacity comes back when the work is done

    def deleter() -> None:
        while not stop.is_set():
            try:
                batch = [done.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < 10:
                try:
                    batch.append(done.get_nowait())
                except queue.Empty:
                    break
            sqs_delete.delete_message_batch(
                QueueUrl=args.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)],
            )

    for _ in range(args.pollers):
        threading.Thread(target=receiver, daemon=True).start()
    for _ in range(workers):
        threading.Thread(target=downloader, daemon=True).start()
    for _ in range(args.pollers - 1):
        threading.Thread(target=deleter, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(json.dumps({"event": "ready"}), flush=True)
    deleter()
    return 0


if __name__ == "__main__":
    sys.exit(main())
