"""Reading the file: size, encoding, YAML, and what only the text shows (duplicate keys,
modes written in decimal); the data then goes to parse.py."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from s3sqsd.config.model import DEFAULT_DOWNLOAD_FOLDER, Config
from s3sqsd.config.parse import parse_config
from s3sqsd.config.values import _key_text
from s3sqsd.errors import ConfigError


def load_config(path: Path, *, default_download_folder: Path = DEFAULT_DOWNLOAD_FOLDER) -> Config:
    """Read and validate the file; raise ConfigError listing every problem found.

    ``default_download_folder`` is the folder when the file sets none: the plain service's, or
    an instance's (``s3sqsd --instance NAME``, see instances.py), given by the caller.
    """
    return _load_config(path, default_download_folder=default_download_folder)


_MAX_FILE_BYTES = 1024 * 1024  # a configuration file is a few KiB; refuse anything absurd
_SOURCE_CHECK_DEPTH = 4  # routes[0].on_download.command: as deep as the settings go


def _load_config(path: Path, *, default_download_folder: Path) -> Config:
    name = str(path)
    text = _read_text(path)
    if not text.strip():
        raise ConfigError(f"{name}: the file is empty; it must set at least sqs_queue_url")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {_describe_yaml_error(exc)}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(
            f"{name}: not valid YAML: line {line}, column {column}: the control character "
            f"U+{int(exc.character):04X} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        first_line = (str(exc).splitlines() or ["unknown error"])[0]
        raise ConfigError(f"{name}: not valid YAML: {first_line}") from None
    except RecursionError:
        raise ConfigError(f"{name}: not valid YAML: nested too deeply") from None
    if root is None:
        # Only comments (the shipped template): no settings at all, so report what is required.
        data = {}
    problems = _source_problems(root)
    try:
        config = parse_config(data, source=name, default_download_folder=default_download_folder)
    except ConfigError as exc:
        # A key already reported from the text (e.g. a decimal mode) is not reported twice.
        reported = tuple(line.split(": ", 1)[0] + ": " for line in problems)
        rest = [line for line in exc.problems if not line.startswith(reported)]
        raise ConfigError([*problems, *rest]) from None
    if problems:
        raise ConfigError(problems)
    return config


def _read_text(path: Path) -> str:
    name = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a configuration file") from None
    except NotADirectoryError:
        raise ConfigError(f"{name}: a component of the path is not a directory") from None
    except PermissionError:
        raise ConfigError(
            f"{name}: permission denied; the file must be readable by the user s3sqsd runs as"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"{name}: larger than {_MAX_FILE_BYTES} bytes; not a configuration file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    """'line L, column C: problem' from yaml's marks, without yaml's echo of the file's text."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = exc.problem or exc.context or "unknown error"
    if exc.problem and exc.context:
        context_mark = exc.context_mark
        at = f" at line {context_mark.line + 1}" if context_mark is not None else ""
        what = f"{exc.problem} ({exc.context}{at})"
    return where + what


def _source_problems(root: yaml.Node | None) -> list[str]:
    """Problems only the YAML text shows, not the loaded data.

    - A key given twice in one mapping: yaml keeps the last one silently, which hides edits.
    - A mode written in decimal (``file_mode: 440``): YAML reads 440 as decimal, which is the
      valid but unintended mode 0670; only a leading 0 (``0440``) makes it octal.
    """
    problems: list[str] = []

    def check(node: yaml.Node, prefix: str, depth: int) -> None:
        if depth > _SOURCE_CHECK_DEPTH:
            return
        if isinstance(node, yaml.SequenceNode):
            # A list (routes): each entry's keys are named routes[0].key, routes[1].key...
            for index, item in enumerate(node.value):
                check(item, f"{prefix.removesuffix('.')}[{index}].", depth + 1)
            return
        if not isinstance(node, yaml.MappingNode):
            return
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    f"{prefix}{_key_text(key)}: duplicate key (lines {first_line[key]} and "
                    f"{line}); keep only one"
                )
            else:
                first_line[key] = line
            check(value_node, f"{prefix}{_key_text(key)}.", depth + 1)
            if depth == 0 and key in _MODE_KEYS and _written_in_decimal(value_node):
                text = str(value_node.value).lstrip("+")
                example = f"0{text}" if set(text) <= set("01234567") else "0640"
                problems.append(
                    f"{key}: {text} is a decimal number; write the mode in octal with a "
                    f"leading 0, such as {example} or '{example}'"
                )

    if root is not None:
        check(root, "", 0)
    return problems


_MODE_KEYS = ("file_mode", "directory_mode")


def _written_in_decimal(node: yaml.Node) -> bool:
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:int"
        and re.fullmatch(r"\+?[1-9][0-9_]+", str(node.value)) is not None
    )
