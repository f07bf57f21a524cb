"""boto3's own ``download_file`` (s3transfer, default TransferConfig: ranged GETs of 8 MiB on
10 threads) on the given objects, one object after the other: the large-object reference.

``python -m bench.transfer --endpoint URL --bucket B --folder DIR KEY...`` prints one JSON line
``{"seconds": ..., "bytes": ..., "cpu_seconds": ..., "peak_rss_kib": ...}``; the clock and the CPU
count start once the client exists (imports and client creation excluded, as for the others).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import boto3
from botocore.config import Config


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("keys", nargs="+")
    args = parser.parse_args()
    s3 = boto3.client(
        "s3",
        region_name=args.region,
        endpoint_url=args.endpoint,
        config=Config(s3={"addressing_style": "path"}),
    )
    before = os.times()
    started = time.monotonic()
    total = 0
    for key in args.keys:
        path = os.path.join(args.folder, key)
        s3.download_file(args.bucket, key, path)
        total += os.path.getsize(path)
    seconds = time.monotonic() - started
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"seconds": seconds, "bytes": total, "cpu_seconds": cpu, "peak_rss_kib": peak})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
