"""``s3sqsd sync``: wire the sync engine (sync.py) to a terminal or a log, and to an exit status.

Exit statuses (the daemon's names where they fit, daemon.py and preflight.py):

- 0 (``EXIT_OK``): every listed object is in place, skipped, or reported as a conflict;
- 1 (``EXIT_SYNC_FAILED``): at least one object, listing or deletion failed (each has its
  ``sync.failed`` line); the others were synced;
- 78 (``EXIT_CONFIG``): the configuration is invalid, names no bucket and none was given,
  or a download folder cannot be used (a running daemon holds it);
- 130 (``EXIT_INTERRUPTED``, 128 + SIGINT as shells report it): stopped by Ctrl-C; what was
  downloaded stays, and the next run downloads the rest;
- 70 (``EXIT_SOFTWARE``): an unexpected internal error.

SIGINT: signal handlers are installed only by daemon.py (the project's rule: one place owns
the process's signals). Here the default SIGINT handler stays, which raises KeyboardInterrupt
in the main thread only. The engine runs on a thread of its own and the main thread only waits
for it and draws the progress, so the KeyboardInterrupt can only land in that wait, never in
the middle of the engine's work; it becomes ``Sync.stop()``. A second Ctrl-C exits at once
(130): nothing partial is ever at a final path (files arrive by rename), and the temp files
are swept by the next run. SIGTERM keeps its default action (the process ends) for the same
reason.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from s3sqsd.aws import make_clients
from s3sqsd.daemon import EXIT_CONFIG, EXIT_OK, EXIT_SOFTWARE
from s3sqsd.errors import ConfigError, LocalError
from s3sqsd.instances import Service
from s3sqsd.listing import targets
from s3sqsd.logs import add_secrets, configure_logging, set_level
from s3sqsd.progress import ClearBeforeLogging, LogProgress, Reporter, TerminalProgress
from s3sqsd.ranged import parts_executor
from s3sqsd.sync import Planned, Sync, Tally, sync_fetchers

logger = logging.getLogger("s3sqsd.sync")

EXIT_SYNC_FAILED = 1
EXIT_INTERRUPTED = 130

_WAIT_SECONDS = 0.2  # how often the main thread redraws or checks the progress


def run_sync(
    service: Service, *, dry_run: bool, delete: bool, bucket: str | None, prefix: str
) -> int:
    """The whole command; returns the exit status."""
    # JSON log lines go to stderr: stdout carries the dry run's plan, one line per action.
    configure_logging(level="info", stream=sys.stderr)
    try:
        return _sync(service, dry_run=dry_run, delete=delete, bucket=bucket, prefix=prefix)
    except KeyboardInterrupt:  # before the engine started: nothing to stop
        return EXIT_INTERRUPTED
    except Exception:
        logger.critical(
            "s3sqsd sync stopped on an unexpected error",
            exc_info=True,
            extra={"event": "sync.crashed"},
        )
        return EXIT_SOFTWARE


def _sync(service: Service, *, dry_run: bool, delete: bool, bucket: str | None, prefix: str) -> int:
    path = service.config_path
    try:
        config = service.load()
        wanted = targets(config, bucket=bucket, prefix=prefix)
        clients = make_clients(config)
    except ConfigError as exc:
        for problem in exc.problems:
            text = problem if problem.startswith(f"{path}: ") else f"{path}: {problem}"
            print(f"s3sqsd: {text}", file=sys.stderr)
        return EXIT_CONFIG
    set_level(config.log_level)
    add_secrets(*clients.credential_values())
    parts = parts_executor(config.large_objects.concurrency)
    try:
        try:
            fetchers = sync_fetchers(config, s3=clients.s3, parts=parts, prepare=not dry_run)
        except LocalError as exc:
            logger.error("%s", exc, extra={"event": "sync.folder_unusable", "error": str(exc)})
            return EXIT_CONFIG
        engine = Sync(
            config=config,
            s3=clients.s3,
            fetchers=fetchers,
            targets=wanted,
            workers=config.start_workers,
            dry_run=dry_run,
            delete=delete,
            on_plan=_print_plan if dry_run else None,
        )
        try:
            tally = _run_watched(engine)
        finally:
            for fetcher in fetchers.values():
                fetcher.close()
    finally:
        parts.shutdown(wait=False, cancel_futures=True)
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SYNC_FAILED if tally.failed else EXIT_OK


def _print_plan(planned: Planned) -> None:
    """One dry-run line: ``ACTION s3://bucket/key -> path (reason)``."""
    print(f"{planned.action} {planned.url} -> {planned.path} ({planned.reason})", flush=True)


def _run_watched(engine: Sync) -> Tally:
    """Run ``engine`` on its own thread; the main thread draws progress and turns Ctrl-C into
    ``stop`` (the module docstring says why)."""
    progress = _reporter()
    done: list[Tally] = []
    finished = threading.Event()

    def work() -> None:
        try:
            done.append(engine.run())
        finally:
            finished.set()

    thread = threading.Thread(target=work, name="s3sqsd-sync", daemon=True)
    started = time.monotonic()
    thread.start()
    # The wait is a sleep, not ``thread.join(timeout)``: a KeyboardInterrupt that lands inside
    # ``join`` left the thread looking finished (``is_alive()`` False) while it still ran
    # (seen on CPython 3.11 by the Ctrl-C test in tests/integration/test_sync.py).
    while not finished.is_set():
        try:
            time.sleep(_WAIT_SECONDS)
            progress.update(engine.progress(), elapsed=time.monotonic() - started)
        except KeyboardInterrupt:
            if engine.stopping:
                progress.finish()
                logger.warning("second interrupt: exiting now", extra={"event": "sync.forced_exit"})
                logging.shutdown()
                os._exit(EXIT_INTERRUPTED)
            progress.finish()
            logger.warning(
                "interrupted: stopping (downloads in hand are abandoned; run sync again to finish)",
                extra={"event": "sync.stopping"},
            )
            engine.stop()
    progress.finish()
    if not done:  # the engine raised: threading printed its traceback
        raise RuntimeError("the sync engine ended without a result")
    return done[0]


def _reporter() -> Reporter:
    if not sys.stderr.isatty():
        return LogProgress()
    terminal = TerminalProgress(sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ClearBeforeLogging(terminal))
    return terminal
