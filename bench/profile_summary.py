"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) written by ``run.py --profile``.

``python -m bench.profile_summary PROFILE.txt [--top 25] [--thread s3sqsd-download]``

Prints the share of samples per thread, then the functions with the most samples on their own
(self) and anywhere on the stack (inclusive), as ``function (file)``, lines merged. With
``--nonblocking --threads`` every sample is one thread seen running Python code or waiting, so
"idle" frames (a thread blocked in ``wait``/``select``) show up too; ``--active`` keeps only
stacks whose leaf is not one of those waits.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_IDLE_LEAVES = (
    "wait (threading.py)",
    "_wait_for_tstate_lock (threading.py)",
    "get (queue.py)",
    "select (selectors.py)",
    "poll (selectors.py)",
    "readinto (socket.py)",
    "recv_into",
    "_worker (concurrent/futures/thread.py)",
)


# Frames of this checkout are shown relative to it, wherever it was cloned.
REPO = str(Path(__file__).resolve().parents[1])


def _frame(raw: str) -> str:
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", f"{REPO}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


# Leaf frames grouped by where the time goes (first match wins; the file part of the frame).
CATEGORIES = (
    (
        "AWS SDK and HTTP (botocore, urllib3, http.client)",
        (
            "botocore/",
            "urllib3/",
            "http/",
            "email/",
            "socket.py",
            "dateutil/",
            "ssl.py",
            "s3transfer/",
            "hmac.py",
            "hashlib.py",
            "uuid.py",
            "random.py",
            "base64.py",
            "urllib/",
            "json/decoder.py",
            "calendar.py",
            "datetime.py",
        ),
    ),
    (
        "logging (JSON lines)",
        ("logging/", "pythonjsonlogger/", "json/encoder.py", "json/__init__.py", "s3sqsd/logs.py"),
    ),
    (
        "paths, stat, open, xattr (posixpath, pathlib, fetcher)",
        (
            "posixpath",
            "pathlib.py",
            "genericpath",
            "s3sqsd/fetcher.py",
            "s3sqsd/folder.py",
            "s3sqsd/staging.py",
            "s3sqsd/provenance.py",
            "s3sqsd/pathlocks.py",
            "s3sqsd/download.py",
            "s3sqsd/removal.py",
            "s3sqsd/paths.py",
            "contextlib.py",
            "stat.py",
            "os.py",
        ),
    ),
    ("event parsing", ("s3sqsd/events.py",)),
    (
        "threads, queues, futures",
        ("threading.py", "queue.py", "concurrent/", "s3sqsd/worker.py", "s3sqsd/worker/"),
    ),
    ("metrics, notify", ("s3sqsd/metrics.py", "s3sqsd/notify.py", "sdnotify/")),
)


def category(frame: str) -> str:
    for name, markers in CATEGORIES:
        if any(marker in frame for marker in markers):
            return name
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="only threads whose name contains this")
    parser.add_argument("--active", action="store_true", help="drop stacks blocked in a wait")
    args = parser.parse_args()
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.profile.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else ""
        if args.thread and args.thread not in line.split(";", 2)[0] + thread:
            continue
        body = [_frame(f) for f in frames if not f.startswith(("thread (", "process "))]
        if not body:
            continue
        if args.active and any(body[-1].startswith(idle) for idle in _IDLE_LEAVES):
            continue
        total += count
        threads[thread or "?"] += count
        own[body[-1]] += count
        groups[category(body[-1])] += count
        for name in set(body):
            inclusive[name] += count
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    print("\nper thread:")
    for name, count in threads.most_common(12):
        print(f"  {count / total:6.1%}  {name}")
    print("\nself time by category (leaf frame):")
    for name, count in groups.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print("\nself:")
    for name, count in own.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    print("\ninclusive:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
