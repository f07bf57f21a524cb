"""The checks of single values every section uses (numbers, choices, modes, paths, bucket
names), the problem list they add to, and how a value is shown in a message."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_MAX_SHOWN_CHARS = 200  # longer values are described, never echoed
_OCTAL_MODE = re.compile(r"(?:0[oO])?([0-7]{1,4})")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,80}")


_Check = Callable[["_Problems", str, object], Any]


class _Problems:
    """Collects one line per problem, each starting with the dotted key path."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")


def _download_folder(problems: _Problems, path: str, value: object) -> Path | None:
    if not isinstance(value, str) or not value.startswith("/"):
        problems.add(path, f"must be an absolute path (starting with /), got {_show(value)}")
        return None
    if "\0" in value:
        problems.add(path, "must not contain a NUL character")
        return None
    # normpath keeps a leading '//' (POSIX leaves it implementation-defined; on Linux it is '/').
    normal = "/" + os.path.normpath(value).lstrip("/")
    if normal == "/":
        problems.add(path, f"must not be the root directory, got {_show(value)}")
        return None
    return Path(normal)


def _bucket_names(problems: _Problems, path: str, value: object) -> tuple[str, ...] | None:
    if isinstance(value, Mapping):
        problems.add(path, f"must be a bucket name or a list of bucket names, got {_show(value)}")
        return None
    if not isinstance(value, list):
        return (str(value),) if _bucket_name(problems, path, value) else None
    if not value:
        problems.add(path, "must list at least one bucket; leave it unset to accept every bucket")
        return None
    ok = [_bucket_name(problems, f"{path}[{index}]", item) for index, item in enumerate(value)]
    if not all(ok):
        return None
    return tuple(dict.fromkeys(value))  # duplicates are harmless: drop them, keep the order


def _bucket_name(problems: _Problems, path: str, value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems.add(path, f"must be a bucket name, got the number {_show(value)}; quote it")
        return False
    if not isinstance(value, str):
        problems.add(path, f"must be a bucket name, got {_show(value)}")
        return False
    if not value:
        problems.add(path, "must be a bucket name, got an empty string")
        return False
    if "/" in value:
        problems.add(
            path, f"must be a bucket name only, without s3:// or a '/', got {_show(value)}"
        )
        return False
    if any(ch.isspace() for ch in value):
        problems.add(path, f"must not contain whitespace, got {_show(value)}")
        return False
    return True


def _int_range(
    low: int, high: int, *, note: str = ""
) -> Callable[[_Problems, str, object], int | None]:
    suffix = f" ({note})" if note else ""

    def check(problems: _Problems, path: str, value: object) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.add(
                path,
                f"must be an integer from {low} to {high}{suffix}, got {_show(value)}"
                + _quoted_number_hint(value),
            )
            return None
        return value

    return check


def _seconds_range(low: float, high: float) -> Callable[[_Problems, str, object], float | None]:
    def check(problems: _Problems, path: str, value: object) -> float | None:
        number = _number(value)
        if number is None or not low <= number <= high:
            problems.add(
                path,
                f"must be a number of seconds from {low:g} to {high:g}, got {_show(value)}"
                + _quoted_number_hint(value),
            )
            return None
        return number

    return check


def _number(value: object) -> float | None:
    """A finite int or float as float; None for anything else (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _mode(required: int, required_text: str) -> Callable[[_Problems, str, object], int | None]:
    def check(problems: _Problems, path: str, value: object) -> int | None:
        mode: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        elif isinstance(value, str) and (match := _OCTAL_MODE.fullmatch(value)):
            mode = int(match.group(1), 8)
        if mode is None or not 0 <= mode <= 0o777:
            hint = ""
            if isinstance(value, int) and not isinstance(value, bool) and _octal_digits(value):
                hint = f" ({value} is read as decimal; write 0{value} or '0{value}')"
            problems.add(
                path,
                f"must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
                f"got {_show(value)}{hint}",
            )
            return None
        if mode & required != required:
            problems.add(
                path,
                f"must include the owner's {required_text} permission (0{required:03o}), "
                f"got 0{mode:03o}",
            )
            return None
        return mode

    return check


def _octal_digits(value: int) -> bool:
    """True for a decimal int such as 640 that was surely meant as the octal mode 0640."""
    return 0o777 < value <= 777 and set(str(value)) <= set("01234567")


def _mapping(
    problems: _Problems, path: str, value: object, keys: tuple[str, ...], *, hint: str = ""
) -> Mapping[Any, Any] | None:
    if not isinstance(value, Mapping):
        problems.add(
            path, f"must be a mapping with the keys {', '.join(keys)}{hint}, got {_show(value)}"
        )
        return None
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[_Problems, str, object], str | None]:
    def check(problems: _Problems, path: str, value: object) -> str | None:
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        suggestion = ""
        if isinstance(value, str):
            wanted = value.lower().replace("-", "_").replace(" ", "_")
            close = difflib.get_close_matches(wanted, choices, n=1, cutoff=0.6)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(path, f"must be one of {', '.join(choices)}, got {_show(value)}{suggestion}")
        return None

    return check


def _show(value: object) -> str:
    """A value as it may appear in an error: short scalars as written, everything else described."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() < 128 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if len(value) > _MAX_SHOWN_CHARS:
            return f"a string of {len(value)} characters"
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def _quoted_number_hint(value: object) -> str:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (a string; remove the quotes)"
    return ""


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key if _PLAIN_KEY.fullmatch(key) else _show(key[:80])
    return _show(key)


def _pattern(
    problems: _Problems, path: str, value: object, pattern: re.Pattern[str], what: str
) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    problems.add(path, f"must be {what}, got {_show(value)}")
    return None


def _boolean(problems: _Problems, path: str, value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.add(path, f"must be true or false, got {_show(value)}")
    return None


def _absolute_file(problems: _Problems, path: str, value: object) -> Path | None:
    """An absolute path; whether the file exists and who may read it is checked at start."""
    if not isinstance(value, str) or not value.startswith("/") or value.endswith("/"):
        problems.add(path, f"must be the absolute path of a file, got {_show(value)}")
        return None
    if "\0" in value:
        problems.add(path, "must not contain a NUL character")
        return None
    return Path(os.path.normpath(value))
