"""End-to-end demo: a local S3+SQS emulator, the real s3sqsd process, a few uploads.

Run with ``make demo``. It starts the emulator on 127.0.0.1 (a random port), creates a bucket
whose notifications go to a queue (with a dead-letter queue, as on AWS), writes a config, starts
``python -m s3sqsd`` in the foreground (its JSON log lines are shown as they come), uploads a
few files with awkward names, checks every byte that lands in the download folder, and stops
the daemon with SIGTERM. Exit status 0 when every file arrived intact and the queue is empty.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from s3sqsd.paths import PATH_LOCK_NAME, TEMP_DIR_NAME
from tests.support.emulator import TEST_ENV, Emulator, wait_until

REPO = Path(__file__).resolve().parent.parent

FILES = {
    "reports/2026/q1 summary.csv": b"region,total\neu,42\nus,17\n",
    "images/c++ logo+v2.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "données/café résumé.txt": "naïve café résumé\n".encode(),
    "empty.flag": b"",
    "big/random.bin": os.urandom(3 * 1024 * 1024),
}


def main() -> int:
    workdir = REPO / "demo-run"
    shutil.rmtree(workdir, ignore_errors=True)
    download = workdir / "downloads"
    workdir.mkdir()
    emulator = Emulator()
    print(f"== emulator (moto server) listening on {emulator.endpoint}", flush=True)
    pipeline = emulator.pipeline(via="direct")
    config = workdir / "config.yaml"
    config.write_text(
        "# written by tools/demo.py\n"
        f"aws_region: us-east-1\n"
        f"sqs_queue_url: {pipeline.queue_url}\n"
        f"download_folder: {download}\n"
        f"s3_bucket_name: {pipeline.bucket}\n"
        f"endpoint_url: {emulator.endpoint}\n"
        f"dead_letter_queue_url: {pipeline.dlq_url}\n"
    )
    print(f"== config {config}:\n{config.read_text()}", flush=True)
    env = dict(os.environ, **TEST_ENV, PYTHONPATH=str(REPO))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "s3sqsd", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()

    def show_logs() -> None:
        assert daemon.stdout is not None
        for line in daemon.stdout:
            print("   s3sqsd | " + line.rstrip(), flush=True)
            if '"daemon.ready"' in line:
                ready.set()

    threading.Thread(target=show_logs, daemon=True).start()
    try:
        wait_until(ready.is_set, timeout=30, what="s3sqsd to be ready")
        s3 = emulator.client("s3")
        print(f"== uploading {len(FILES)} objects to s3://{pipeline.bucket}/", flush=True)
        for key, body in FILES.items():
            s3.put_object(Bucket=pipeline.bucket, Key=key, Body=body)
        wait_until(
            lambda: all((download / key).is_file() for key in FILES),
            timeout=60,
            what="every file on disk",
        )
        wait_until(
            lambda: emulator.queue_counts(pipeline.queue_url) == (0, 0),
            timeout=30,
            what="the queue to be empty",
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        status = daemon.wait(timeout=60)
        time.sleep(0.1)  # let the log thread print the last lines
        emulator.stop()
    print(f"== s3sqsd exited with status {status}", flush=True)
    good = True
    for key, body in FILES.items():
        path = download / key
        same = path.read_bytes() == body
        good &= same
        digest = hashlib.sha256(body).hexdigest()[:12]
        verdict = "ok " if same else "BAD"
        size = f"{len(body)} bytes, sha256 {digest}…"
        print(f"   {verdict} {path.relative_to(REPO)}  ({size})")
    # The per-path lock file stays for good (s3sqsd/pathlocks.py); anything else is a leftover.
    temp = [p for p in (download / TEMP_DIR_NAME).iterdir() if p.name != PATH_LOCK_NAME]
    print(f"== temp folder entries left: {len(temp)}; queue empty: yes")
    return 0 if good and status == 0 and not temp else 1


if __name__ == "__main__":
    sys.exit(main())
