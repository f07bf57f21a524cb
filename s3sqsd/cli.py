"""Command line: ``s3sqsd [--config PATH | --instance NAME]``, ``s3sqsd check-config``,
``s3sqsd check``, ``s3sqsd sync``, ``s3sqsd --version``.

Wires everything together and maps failures to exit statuses; no other module reads argv or
the process environment for configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from s3sqsd import __version__
from s3sqsd.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH
from s3sqsd.daemon import EXIT_CONFIG, EXIT_OK, EXIT_SOFTWARE, Daemon
from s3sqsd.errors import ConfigError
from s3sqsd.instances import Service, instance_service
from s3sqsd.logs import configure_logging, set_level
from s3sqsd.preflight import EXIT_CHECK_FAILED, make_check_clients, run_checks
from s3sqsd.sync_command import run_sync

logger = logging.getLogger("s3sqsd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3sqsd",
        description="Download objects announced by S3 event notifications on an SQS queue.",
    )
    parser.add_argument("--version", action="version", version=f"s3sqsd {__version__}")
    _add_service_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon in the foreground (the default)")
    _add_service_options(run)
    check = commands.add_parser("check-config", help="validate the configuration and exit")
    _add_service_options(check)
    preflight = commands.add_parser(
        "check",
        help="check the configuration, AWS access, the queue and the download folder, "
        "changing nothing; exit 1 on any FAIL",
    )
    _add_service_options(preflight)
    sync = commands.add_parser(
        "sync",
        help="download every object of the configured buckets that is not in the folder yet, "
        "once, and exit (0: nothing failed)",
    )
    _add_service_options(sync)
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be done, one line per action, and change nothing",
    )
    sync.add_argument(
        "--delete",
        action="store_true",
        help="also remove local files whose recorded object is no longer in the bucket",
    )
    sync.add_argument(
        "--bucket", help="the bucket to list when the configuration names none (or one of them)"
    )
    sync.add_argument("--prefix", default="", help="list only keys that start with this")
    return parser


def _add_service_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """--config and --instance, on the command line before or after the command's name."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help=f"configuration file (default: ${CONFIG_ENV_VAR} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--instance",
        metavar="NAME",
        default=default,
        help="the instance s3sqsd@NAME.service: /etc/s3sqsd/NAME.yaml (unless --config), and "
        "/var/lib/s3sqsd-NAME/downloads when the file sets no download_folder",
    )


def _service(args: argparse.Namespace) -> Service:
    """--config, else --instance's file, else $S3SQSD_CONFIG, else the default file."""
    if args.instance is not None:
        return instance_service(args.instance, config_path=args.config)
    if args.config is not None:
        return Service(config_path=args.config)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    return Service(config_path=Path(from_env) if from_env else DEFAULT_CONFIG_PATH)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        service = _service(args)
    except ConfigError as exc:  # a name that cannot be an instance's
        if args.command in (None, "run"):  # the daemon: a JSON line for the journal
            configure_logging(level="info")
            for problem in exc.problems:
                logger.error("%s", problem, extra={"event": "config.invalid"})
        else:
            for problem in exc.problems:
                print(f"s3sqsd: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        return _check_config(service)
    if args.command == "check":
        return _check(service)
    if args.command == "sync":
        return run_sync(
            service,
            dry_run=args.dry_run,
            delete=args.delete,
            bucket=args.bucket,
            prefix=args.prefix,
        )
    return _run(service)


def _check_config(service: Service) -> int:
    path = service.config_path
    try:
        service.load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"s3sqsd: {_with_path(path, problem)}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"s3sqsd: {path}: configuration is valid")
    return EXIT_OK


def _check(service: Service) -> int:
    """The pre-flight check: one checklist line per item on stdout; exit 1 on any FAIL."""
    path = service.config_path
    try:
        config = service.load()
        clients = make_check_clients(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"s3sqsd: {_with_path(path, problem)}", file=sys.stderr)
        return EXIT_CONFIG
    report = run_checks(
        config, config_path=path, clients=clients, emit=lambda r: print(r.line(), flush=True)
    )
    print(report.summary())
    return EXIT_CHECK_FAILED if report.failed else EXIT_OK


def _run(service: Service) -> int:
    # Log as JSON from the first line, so even a config error reaches the journal as JSON.
    configure_logging(level="info")
    path = service.config_path
    try:
        config = service.load()
    except ConfigError as exc:
        _report_config_error(path, exc)
        return EXIT_CONFIG
    set_level(config.log_level)
    try:
        return Daemon(config=config, service=service).run()
    except ConfigError as exc:
        _report_config_error(path, exc)
        return EXIT_CONFIG
    except Exception:
        logger.critical(
            "s3sqsd stopped on an unexpected error",
            exc_info=True,
            extra={"event": "daemon.crashed"},
        )
        return EXIT_SOFTWARE


def _report_config_error(path: Path, exc: ConfigError) -> None:
    for problem in exc.problems:
        about_file = problem.startswith(f"{path}: ")
        logger.error(
            "%s",
            _with_path(path, problem),
            extra={
                "event": "config.invalid",
                "config_key": None if about_file else problem.split(":", 1)[0],
                "path": str(path),
            },
        )
    print(
        f"s3sqsd: {path}: invalid configuration ({len(exc.problems)} problem(s)); not starting",
        file=sys.stderr,
    )


def _with_path(path: Path, problem: str) -> str:
    """Problems about a key get the file name in front; problems about the file have it."""
    return problem if problem.startswith(f"{path}: ") else f"{path}: {problem}"
