"""The script s3sqsd replaces, re-implemented for the benchmark from its description: the same
algorithm, none of its code.

- one message per ReceiveMessage (``MaxNumberOfMessages=1``, 20 s long poll);
- the objects of that message downloaded one after the other with ``s3.download_file`` straight
  to the final path (no temp file, no checks, no fsync);
- the key decoded with ``urllib.parse.unquote`` (so ``a+b`` stays ``a+b``: the bug);
- the message deleted with DeleteMessage once its downloads are done;
- on any error: log it, ``time.sleep`` a doubling delay (1 s up to 60 s) in the only thread, go on.

The four config keys (``aws_region``, ``sqs_queue_url``, ``download_folder``, ``s3_bucket_name``)
come from a YAML file; the endpoint comes from ``AWS_ENDPOINT_URL`` (boto3 reads it itself), as it
would have for a script pointed at a local store. SIGTERM kills it at once (Python's default), as
it did. It prints ``{"event": "ready"}`` once its clients exist, then one line per file.

``python -m bench.original --config original.yaml``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from urllib.parse import unquote

import boto3
import yaml


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    queue_url = config["sqs_queue_url"]
    folder = config["download_folder"]
    allowed = config.get("s3_bucket_name")
    sqs = boto3.client("sqs", region_name=config["aws_region"])
    s3 = boto3.client("s3", region_name=config["aws_region"])
    print(json.dumps({"event": "ready"}), flush=True)
    delay = 1.0
    while True:
        try:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=20
            )
            for message in response.get("Messages", []):
                body = json.loads(message["Body"])
                for record in body.get("Records", []):
                    bucket = record["s3"]["bucket"]["name"]
                    if allowed and bucket != allowed:
                        continue
                    key = unquote(record["s3"]["object"]["key"])
                    destination = os.path.join(folder, key)
                    os.makedirs(os.path.dirname(destination), exist_ok=True)
                    s3.download_file(bucket, key, destination)
                    print(json.dumps({"event": "downloaded", "key": key}), flush=True)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            delay = 1.0
        except Exception as exc:
            print(json.dumps({"event": "error", "error": str(exc)[:300]}), flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 60.0)


if __name__ == "__main__":
    sys.exit(main())
