"""``on_download``: the program run after each download, an argument list, never a shell."""

from __future__ import annotations

from s3sqsd.config.keys import _SECTION_KEYS, _unknown_keys
from s3sqsd.config.model import DEFAULT_COMMAND_TIMEOUT_SECONDS, CommandConfig
from s3sqsd.config.values import _mapping, _Problems, _seconds_range, _show

_MAX_COMMAND_TIMEOUT_SECONDS = 86400.0  # one day; the message's lease stops at 12 hours anyway


def _command(problems: _Problems, path: str, value: object) -> CommandConfig | None:
    section = _mapping(problems, path, value, _SECTION_KEYS["on_download"])
    if section is None:
        return None
    before = len(problems.lines)
    command: tuple[str, ...] | None = None
    raw = section.get("command")
    if raw is None:
        problems.add(f"{path}.command", "required key is missing")
    else:
        command = _argv(problems, f"{path}.command", raw)
    timeout = DEFAULT_COMMAND_TIMEOUT_SECONDS
    raw_timeout = section.get("timeout_seconds")
    if raw_timeout is not None:
        checked = _seconds_range(1.0, _MAX_COMMAND_TIMEOUT_SECONDS)(
            problems, f"{path}.timeout_seconds", raw_timeout
        )
        timeout = timeout if checked is None else checked
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["on_download"])
    if len(problems.lines) != before or command is None:
        return None
    return CommandConfig(command=command, timeout_seconds=timeout)


def _argv(problems: _Problems, path: str, value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        problems.add(
            path,
            "must be a list of arguments such as [/usr/local/bin/ingest, --quiet]; no shell is "
            f"used, so one string is not split into words, got {_show(value)}",
        )
        return None
    if not isinstance(value, list):
        problems.add(path, f"must be a list of arguments, got {_show(value)}")
        return None
    if not value:
        problems.add(path, "must list at least the program to run")
        return None
    ok = True
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if isinstance(item, int | float) and not isinstance(item, bool):
            problems.add(where, f"must be a string, got the number {_show(item)}; quote it")
            ok = False
        elif not isinstance(item, str):
            problems.add(where, f"must be a string, got {_show(item)}")
            ok = False
        elif not item:
            problems.add(where, "must not be an empty string")
            ok = False
        elif "\0" in item:
            problems.add(where, "must not contain a NUL character")
            ok = False
        elif index == 0 and not item.startswith("/"):
            problems.add(
                where,
                "must be the absolute path of the program (starting with /); commands are not "
                f"looked up in PATH, got {_show(item)}",
            )
            ok = False
    return tuple(value) if ok else None
