"""Logging: one JSON object per line on stdout; the only module that installs handlers.

Every line has ``level``, ``message``, ``time`` and a stable ``event`` name, plus the context
fields a call passes in ``extra`` (``bucket``, ``key``, ``path``, ``size``, ``message_id``,
``duration_ms``...). Message bodies and credentials are never logged: the AWS libraries' own
loggers are held at WARNING whatever ``log_level`` says, because their debug output contains
request headers (session tokens, signatures).

Under systemd, stdout is the journal (``JOURNAL_STREAM`` names its device and inode). Each line
then starts with the sd-daemon priority prefix (``<4>`` for a warning), which journald strips
and turns into ``PRIORITY``, so ``journalctl -p warning`` works on JSON lines.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import IO, Any

from s3sqsd.redact import might_need_redaction, redact

try:  # python-json-logger >= 3
    from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter
except ImportError:  # python-json-logger 2.x (Debian bookworm ships 2.0.1)
    from pythonjsonlogger.jsonlogger import (  # type: ignore[attr-defined, no-redef]
        JsonFormatter as _BaseJsonFormatter,
    )

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# sd-daemon(3) priorities for the prefix journald understands.
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

# Libraries whose debug output would carry headers with credentials or whole bodies.
_QUIET_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3")


class JsonFormatter(_BaseJsonFormatter):  # type: ignore[misc, valid-type]
    """JSON lines with the field names operators query: ``level``, ``event``, ``message``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Exact credential values to blank out (the daemon registers the ones it resolved). A
        # frozenset swapped whole, so a thread adding one never disturbs a line being formatted.
        self.secrets: frozenset[str] = frozenset()
        self._lasting: frozenset[str] = frozenset()
        self._rotating: tuple[str, ...] = ()
        self.secrets_lock = threading.Lock()

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["time"] = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z"
        )
        # Last line of defence: no log field carries a signature, token or key id, whatever
        # text an AWS error put there (s3sqsd/redact.py). One scan of all the string fields
        # decides (the line per downloaded file has about ten); NUL cannot occur in a secret
        # or a trigger word, so nothing matches across two fields.
        joined = "\0".join(v for v in log_record.values() if isinstance(v, str))
        if might_need_redaction(joined) or any(secret in joined for secret in self.secrets):
            for name, value in log_record.items():
                if isinstance(value, str):
                    for secret in self.secrets:
                        value = value.replace(secret, "***")
                    log_record[name] = redact(value)
        log_record["level"] = record.levelname.lower()
        log_record.setdefault("event", "log")
        log_record["logger"] = record.name
        log_record.pop("levelname", None)


class _PriorityHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Prefix each line with ``<N>`` so journald records the right PRIORITY."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>" + super().format(record)


def stdout_is_journal(
    stream: IO[str] | None = None, *, environ: dict[str, str] | None = None
) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``JOURNAL_STREAM=dev:ino``)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        device, inode = (int(part) for part in value.split(":", 1))
        st = os.fstat((stream or sys.stdout).fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def configure_logging(
    *, level: str = "info", stream: IO[str] | None = None, journal: bool | None = None
) -> None:
    """Install the one JSON handler on the root logger (replacing any previous one)."""
    out = stream or sys.stdout
    if out is sys.stdout and hasattr(out, "reconfigure"):
        # Keys are logged as UTF-8 text, readable; anything unencodable is escaped, never fatal.
        out.reconfigure(errors="backslashreplace", line_buffering=True)
    use_prefix = stdout_is_journal(out) if journal is None else journal
    handler: logging.Handler = _PriorityHandler(out) if use_prefix else logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("%(message)s", json_ensure_ascii=False))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """Apply ``log_level`` (also on reload); AWS libraries stay at WARNING or above."""
    numeric = LEVELS.get(level, logging.INFO)
    logging.getLogger().setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


# Refreshed credentials (an assumed role's, every hour or so) are kept this many values deep:
# an expired session token cannot sign anything, and every log line scans the whole set.
_ROTATING_SECRETS = 48


def add_secrets(*values: str | None, rotating: bool = False) -> None:
    """Never log these exact values (credentials the daemon resolved, an SSE-C key), on our
    handlers. ``rotating``: values that refresh (assumed-role credentials): only the latest
    few are kept, so the set does not grow for the life of the process. Any thread may call."""
    wanted = tuple(dict.fromkeys(v for v in values if v and len(v) >= 8))
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, JsonFormatter):
            with formatter.secrets_lock:
                if rotating:
                    kept = tuple(v for v in formatter._rotating if v not in wanted)
                    formatter._rotating = (kept + wanted)[-_ROTATING_SECRETS:]
                else:
                    formatter._lasting = formatter._lasting | frozenset(wanted)
                formatter.secrets = formatter._lasting | frozenset(formatter._rotating)
