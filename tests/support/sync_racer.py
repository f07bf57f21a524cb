"""A second process on a download folder, as ``s3sqsd sync`` is one: a Fetcher in the sync role
(``FolderRole.SYNC``), driven line by line by a test (tests/integration/test_converge.py).

    python -m tests.support.sync_racer '{"endpoint": ..., "root": ..., "fetch": {...}}'

It prepares its fetcher and prints ``ready <its temp sub-folder>``. With ``fetch`` (bucket,
key, version_id, etag, size: a listing's object), it fetches it; with ``pause``, it stops inside
the per-path locks right before its rename, prints ``inside`` and waits for a line on stdin
before going on. It prints ``result <outcome>`` at the end, then waits for stdin to close
(so a test can keep its sub-folder alive), and exits 0. The barrier is the pipe: no sleeps.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher, FolderRole
from s3sqsd.staging import StagedFile
from tests.support.emulator import emulator_client


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[1])
    fetcher = Fetcher(
        s3=emulator_client("s3", endpoint=spec["endpoint"]),
        root=Path(spec["root"]),
        role=FolderRole.SYNC,
    )
    fetcher.prepare()
    say(f"ready {fetcher._folder.work_dir}")
    wanted = spec.get("fetch")
    if wanted is not None:
        if spec.get("pause"):
            move_to = StagedFile.move_to

            def paused(self: StagedFile, final: Path, obj: ObjectCreated) -> None:
                say("inside")
                sys.stdin.readline()
                move_to(self, final, obj)

            StagedFile.move_to = paused  # type: ignore[method-assign]
        obj = ObjectCreated(
            bucket=wanted["bucket"],
            key=wanted["key"],
            event_name="Listing",
            **{name: wanted.get(name) for name in ("size", "etag", "version_id")},
        )
        result = fetcher.fetch(obj, cancel=threading.Event())
        say(f"result {result.outcome.value}")
    sys.stdin.read()  # until the test closes the pipe: the sub-folder stays locked meanwhile
    fetcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
