"""Lifecycle: build the parts, handle signals, run the worker, and exit with a named status.

Signal handlers only set events and wake the loop; all work happens in the loop thread. The first
SIGTERM/SIGINT drains; a second one exits at once (nothing partial can be left at a final path,
because files only reach their final name by an atomic rename; temp files are swept at the next
start). SIGHUP rereads the configuration and applies what can change without a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Any

from s3sqsd import __version__
from s3sqsd.access import describe as describe_access
from s3sqsd.aws import make_clients
from s3sqsd.checksums import HostChecksums
from s3sqsd.config import Config, ReconcileConfig
from s3sqsd.errors import ConfigError, LocalError
from s3sqsd.fetcher import Fetcher
from s3sqsd.fetchers import fetcher_for
from s3sqsd.instances import Service
from s3sqsd.limits import Limits
from s3sqsd.listing import targets
from s3sqsd.logs import add_secrets, set_level, stdout_is_journal
from s3sqsd.metrics import Metrics, serve
from s3sqsd.notify import Notifier
from s3sqsd.ranged import parts_executor
from s3sqsd.reconcile import PassReport, Reconciler
from s3sqsd.routing import Placement, download_folders, route
from s3sqsd.sqs import Queue
from s3sqsd.sync import Planned, Sync
from s3sqsd.worker import FetcherLike, Worker, WorkerSettings

logger = logging.getLogger(__name__)

# How long the drain waits for a reconcile pass to notice the stop (its downloads are cancelled).
RECONCILE_JOIN_SECONDS = 5.0

# Exit statuses (sysexits.h names where one fits). systemd's unit prevents restarts on 78.
EXIT_OK = 0
EXIT_FORCED = 1  # a second signal during the drain
EXIT_SOFTWARE = 70  # EX_SOFTWARE: an unexpected internal error
EXIT_CONFIG = 78  # EX_CONFIG: configuration problem, including an unusable download folder

# The bound: approximate queue depth is read at most once a minute (an API call).
QUEUE_DEPTH_EVERY_SECONDS = 60.0

# Settings a reload cannot change in a running process: they shape clients, the fetcher or the
# queue binding. A reload that changes them says so and keeps the running values.
RESTART_ONLY = frozenset(
    {
        "sqs_queue_url",
        "download_folder",
        "aws",
        "expected_bucket_owner",
        "request_payer",
        "sse_customer_key_file",
        "aws_region",
        "endpoint_url",
        "s3_endpoint_url",
        "sqs_endpoint_url",
        "dead_letter_queue_url",
        "file_mode",
        "directory_mode",
        "file_mtime",
        "metrics",
        "routes",
        "large_objects",
        "pollers",
        "integrity",
        "reconcile",
        "max_bandwidth_bytes_per_second",  # s3transfer's LeakyBucket has no settable rate
    }
)


class Daemon:
    """One run of the service, from start-up to exit status."""

    def __init__(self, *, config: Config, service: Service) -> None:
        self._config = config
        self._service = service  # the file a reload reads, and its default folder
        self._notifier = Notifier()
        self._stop = threading.Event()
        self._signals = 0
        self._worker: Worker | None = None
        self._fetchers: dict[Path, Fetcher] = {}
        self._routing_config = config
        self._reconciler: Reconciler | None = None
        self._limits = Limits.none()

    def run(self) -> int:
        # First of all: a SIGTERM during start-up must drain (here: stop before receiving),
        # not kill the process by the default action.
        self._install_signal_handlers()
        config = self._config
        logger.info(
            "s3sqsd %s starting: queue %s, download folder %s",
            __version__,
            config.sqs_queue_url,
            ", ".join(str(folder) for folder in download_folders(config)),
            extra={
                "event": "daemon.starting",
                "version": __version__,
                "queue_url": config.sqs_queue_url,
                "path": str(download_folders(config)[0]),
            },
        )
        clients = make_clients(config)
        add_secrets(*clients.credential_values())
        if clients.plan is not None:
            logger.info(
                "aws: %s",
                describe_access(clients.plan),
                extra={"event": "daemon.aws", "access": describe_access(clients.plan)},
            )
        fetchers: dict[Path, Fetcher] = {}
        large = config.large_objects
        parts = parts_executor(large.concurrency)
        metrics = Metrics()
        # One bandwidth limit and one free-space floor for every fetcher (limits.py).
        limits = self._limits = Limits.from_config(config, metrics=metrics)
        checksums = HostChecksums.detect()
        logger.info(
            "checksums: this host %s; objects only their length can verify are %s (integrity: %s)",
            checksums.summary(),
            "refused" if config.integrity == "strict" else "accepted with a warning",
            config.integrity,
            extra={
                "event": "daemon.integrity",
                "algorithms": sorted(checksums.factories),
                "unverifiable_algorithms": dict(checksums.missing),
                "integrity": config.integrity,
            },
        )
        for folder in download_folders(config):
            fetcher = fetcher_for(
                config, folder, s3=clients.s3, parts=parts, checksums=checksums, limits=limits
            )
            try:
                swept = fetcher.prepare()
            except LocalError as exc:
                logger.error(
                    "%s", exc, extra={"event": "daemon.folder_unusable", "error": str(exc)}
                )
                return EXIT_CONFIG
            logger.info(
                "%s: swept %d temporary files left by an earlier run",
                folder,
                swept,
                extra={"event": "temp.swept", "count": swept, "path": str(folder)},
            )
            if fetcher.xattrs_supported is False:
                logger.warning(
                    "%s has no extended attributes: provenance is not recorded, so stale or "
                    "duplicate events cannot be recognised and are downloaded again",
                    folder,
                    extra={"event": "provenance.unavailable", "path": str(folder)},
                )
            fetchers[folder] = fetcher
        self._fetchers = fetchers
        self._routing_config = config
        dead_letter = (
            Queue(client=clients.sqs_control, url=config.dead_letter_queue_url)
            if config.dead_letter_queue_url
            else None
        )
        serving = config.metrics is not None and serve(metrics, listen=config.metrics.listen)
        worker = Worker(
            receive_queue=Queue(client=clients.sqs_receive, url=config.sqs_queue_url),
            control_queue=Queue(client=clients.sqs_control, url=config.sqs_queue_url),
            dead_letter_queue=dead_letter,
            fetcher=fetchers[download_folders(config)[0]],
            place=self._place,
            settings=WorkerSettings.from_config(config),
            notifier=self._notifier,
            reload=self._reload,
            metrics=metrics,
            queue_depth_every_seconds=QUEUE_DEPTH_EVERY_SECONDS if serving else None,
            pollers=config.pollers,
            share=limits.parts,
        )
        self._worker = worker
        reconciler = Reconciler(
            run_pass=functools.partial(self._reconcile_pass, s3=clients.s3),
            interval_seconds=config.reconcile.interval_seconds if config.reconcile else None,
            metrics=metrics,
            idle=worker.idle,
        )
        self._reconciler = reconciler
        reconciler.start()
        try:
            worker.run(stop=self._stop)
        finally:
            reconciler.stop()  # already stopped by the signal; here for any other way out
            reconcile_stuck = not reconciler.join(RECONCILE_JOIN_SECONDS)
            # The part threads are the daemon's (every fetcher shares them): shut down here,
            # once the worker and the reconcile pass that drive the fetchers have stopped.
            parts.shutdown(wait=False, cancel_futures=True)
        busy = worker.busy_threads()
        metrics = worker.metrics
        logger.info(
            "stopped: %d downloaded, %d deleted, %d dead-lettered",
            metrics.get("objects_downloaded"),
            metrics.get("messages_deleted"),
            metrics.get("messages_dead_lettered"),
            extra={"event": "daemon.stopped"},
        )
        if busy or reconcile_stuck:
            # Download threads stuck in a socket read would hold up interpreter exit (the pool
            # joins its threads at exit). Their messages are released; their temp files are
            # swept at the next start.
            _flush_and_exit(EXIT_OK)
        return EXIT_OK

    def _place(self, bucket: str, key: str) -> Placement[FetcherLike] | None:
        """Route one object (loop thread): the start-up routes, the current on_download and
        top-level after_download."""
        target = route(bucket, key, config=self._routing_config)
        if target is None:
            return None
        return Placement(
            folder=self._fetchers[target.folder],
            key_path=target.key_path,
            on_download=target.on_download,
            after_download=target.after_download,
            route_index=target.route_index,
        )

    def _reconcile_pass(self, stop: threading.Event, *, s3: Any) -> PassReport:
        """One reconcile pass (the reconcile thread): the sync engine over the daemon's own
        fetchers, so its per-path locks and compare-before-rename order a pass and an event."""
        config = self._routing_config
        reconcile = config.reconcile or ReconcileConfig()

        def missing(planned: Planned) -> None:
            if planned.action not in ("download", "replace"):
                return
            logger.warning(
                "reconcile: %s is %s here (%s): its event never reached this host",
                planned.url,
                "missing" if planned.action == "download" else "older",
                planned.reason,
                extra={
                    "event": "reconcile.missing",
                    "url": planned.url,
                    "path": str(planned.path),
                    "action": planned.action,
                },
            )

        engine = Sync(
            config=config,
            s3=s3,
            fetchers=self._fetchers,
            targets=targets(config),
            workers=reconcile.workers,
            on_plan=missing,
            leave_modified_since=datetime.datetime.now(datetime.UTC)
            - datetime.timedelta(seconds=reconcile.min_age_seconds),
        )
        done = threading.Event()

        def stop_engine_on_stop() -> None:  # the engine has its own stop; pass ours on
            while not done.is_set():
                if stop.wait(0.25):
                    engine.stop()
                    return

        watcher = threading.Thread(target=stop_engine_on_stop, name="s3sqsd-reconcile-stop")
        watcher.start()
        try:
            tally = engine.run()
        finally:
            done.set()
            watcher.join()
        return PassReport(
            listed=tally.listed,
            missing=tally.downloaded + tally.replaced,
            skipped=tally.skipped,
            conflicts=tally.conflicts,
            failed=tally.failed,
            complete=tally.listing_finished and not tally.interrupted,
        )

    # ---- signals -----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        signal.signal(signal.SIGUSR1, self._on_reconcile_signal)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            _forced_exit(signal.Signals(signum).name)
        self._stop.set()
        if self._reconciler is not None:
            self._reconciler.stop()
        if self._worker is not None:
            self._worker.wake()

    def _on_reconcile_signal(self, _signum: int, _frame: FrameType | None) -> None:
        if self._reconciler is not None:
            self._reconciler.trigger()

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        if self._worker is not None:
            self._worker.request_reload()

    # ---- reload (called by the worker in the loop thread) ------------------------------------

    def _reload(self) -> WorkerSettings | None:
        self._notifier.reloading()
        try:
            new = self._service.load()
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error(
                    "reload refused, keeping the running configuration: %s",
                    problem,
                    extra={"event": "config.reload_failed", "error": problem},
                )
            self._notifier.ready()
            return None
        changed = [
            f.name for f in fields(Config) if getattr(new, f.name) != getattr(self._config, f.name)
        ]
        needs_restart = sorted(set(changed) & RESTART_ONLY)
        if needs_restart:
            logger.warning(
                "changes to %s take effect only after a restart (systemctl restart %s)",
                ", ".join(needs_restart),
                self._service.unit,
                extra={"event": "config.restart_required", "keys": needs_restart},
            )
        applied = sorted(set(changed) - RESTART_ONLY)
        set_level(new.log_level)
        self._limits.update(new)
        self._config = new
        # Folders and routes keep their start-up values (fetchers are built for them); the
        # rest of the routing (on_download) follows the new file.
        self._routing_config = dataclasses.replace(
            new,
            routes=self._routing_config.routes,
            download_folder=self._routing_config.download_folder,
        )
        logger.info(
            "configuration reloaded; applied: %s",
            ", ".join(applied) or "nothing changed",
            extra={"event": "config.reloaded", "keys": applied},
        )
        self._notifier.ready()
        return WorkerSettings.from_config(new)


def _flush_and_exit(status: int) -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            handler.flush()
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        sys.stdout.flush()
    os._exit(status)


def _forced_exit(signal_name: str) -> None:
    """The second signal: one log line and out, now.

    This runs in a signal handler that may have interrupted the main thread in the middle of
    writing a log line; going through the logging handler again would be a reentrant write on
    the same buffered stream (a RuntimeError that logging swallows, so the exit never happened).
    So the line is written with a raw ``os.write`` and the process leaves with ``os._exit``.
    Nothing partial is left at a final path: files only get there by an atomic rename.
    """
    line = json.dumps(
        {
            "message": f"second {signal_name}: exiting now without waiting for downloads",
            "event": "daemon.forced_exit",
            "level": "warning",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "logger": __name__,
        }
    )
    prefix = "<4>" if stdout_is_journal() else ""
    with contextlib.suppress(OSError):
        os.write(1, f"\n{prefix}{line}\n".encode())
    os._exit(EXIT_FORCED)
