"""Table tests for s3sqsd.paths: hostile keys are refused, good keys map one to one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3sqsd.errors import PermanentError, UnsafeKeyError
from s3sqsd.paths import NAME_MAX, PATH_MAX, TEMP_DIR_NAME, local_path

ROOT = Path("/srv/s3sqsd/downloads")
ROOT_BYTES = len(os.fsencode(str(ROOT)))

# key -> text the error must contain (the rule broken)
UNSAFE: list[tuple[str, str]] = [
    ("", "empty key"),
    ("/", "absolute path"),
    ("/etc/passwd", "absolute path"),
    ("//x", "absolute path"),
    ("/srv/s3sqsd/downloads/x", "absolute path"),
    ("..", "'..' path component"),
    (".", "'.' path component"),
    ("../x", "'..' path component"),
    ("../../etc/passwd", "'..' path component"),
    ("a/../../x", "'..' path component"),
    ("a/../b", "'..' path component"),  # stays inside, but would alias "b"
    ("x/..", "'..' path component"),
    ("x/../", "'..' path component"),
    ("../x/", "'..' path component"),  # a folder marker is still validated
    ("./x", "'.' path component"),
    ("a/./b", "'.' path component"),
    ("a/.", "'.' path component"),
    ("./", "'.' path component"),
    ("../", "'..' path component"),
    ("a//b", "empty path component"),
    ("a//", "empty path component"),
    ("a///b/", "empty path component"),
    ("a\x00b", "control character"),
    ("\x00", "control character"),
    ("../\x00", "control character"),
    ("a\nb", "control character"),
    ("a\rb", "control character"),
    ("a\tb", "control character"),
    ("\x1b[31mred", "control character"),
    ("a\x7f", "control character"),
    ("a\x80", "control character"),
    ("a\x85b", "control character"),  # NEL
    ("a\x9f", "control character"),
    ("a\ud800b", "lone surrogate"),
    ("\udcff", "lone surrogate"),
    ("x" * (NAME_MAX + 1), f"longer than {NAME_MAX} bytes"),
    ("d/" + "é" * 128, f"longer than {NAME_MAX} bytes"),  # 256 bytes in UTF-8, 128 chars
    ("d/" + "\N{FILE FOLDER}" * 64 + "/f", f"longer than {NAME_MAX} bytes"),
    ("/".join(["y" * 200] * 21), f"longer than {PATH_MAX} bytes"),
    # exactly one byte past PATH_MAX once ROOT and the separator are counted
    (
        "/".join(["z" * 254] * 20)[: PATH_MAX - ROOT_BYTES].rstrip("/") + "zz",
        f"longer than {PATH_MAX} bytes",
    ),
    (TEMP_DIR_NAME, "reserved"),
    (f"{TEMP_DIR_NAME}/x", "reserved"),
    (f"{TEMP_DIR_NAME}/", "reserved"),
    (f"{TEMP_DIR_NAME}/a/b.part", "reserved"),
]

# key -> expected path relative to ROOT (None for a folder marker)
SAFE: list[tuple[str, str | None]] = [
    ("a", "a"),
    ("a/b/c.txt", "a/b/c.txt"),
    ("reports/Q1 2024/naïve café+résumé=v2.pdf", "reports/Q1 2024/naïve café+résumé=v2.pdf"),
    ("with space", "with space"),
    (" leading and trailing ", " leading and trailing "),
    ("...", "..."),
    ("..a", "..a"),
    ("a..", "a.."),
    ("a/..b/c", "a/..b/c"),
    (".hidden", ".hidden"),
    (".s3sqsd-tmpx", ".s3sqsd-tmpx"),
    (f"a/{TEMP_DIR_NAME}/b", f"a/{TEMP_DIR_NAME}/b"),  # reserved only directly under the root
    ("..\\x", "..\\x"),  # backslash is an ordinary character on Linux
    ("..\\..\\etc\\passwd", "..\\..\\etc\\passwd"),
    ("C:\\Windows", "C:\\Windows"),
    ("\u2024\u2024/x", "\u2024\u2024/x"),  # ONE DOT LEADER lookalikes
    ("\uff0e\uff0e/x", "\uff0e\uff0e/x"),  # FULLWIDTH FULL STOP
    ("\u2215etc\u2215passwd", "\u2215etc\u2215passwd"),  # DIVISION SLASH
    ("%2e%2e/x", "%2e%2e/x"),  # already decoded: a literal name
    ("~/x", "~/x"),
    ("$HOME", "$HOME"),
    ("\N{FILE FOLDER}/\N{PILE OF POO}.txt", "\N{FILE FOLDER}/\N{PILE OF POO}.txt"),
    ("x" * NAME_MAX, "x" * NAME_MAX),
    ("d/" + "é" * 127, "d/" + "é" * 127),  # 254 bytes
    ("a\xa0b", "a\xa0b"),  # NO-BREAK SPACE is printable
    ("a/", None),
    ("a/b/", None),
    ("\u2024\u2024/", None),
]


@pytest.mark.parametrize(("key", "rule"), UNSAFE, ids=[repr(k[:24]) for k, _ in UNSAFE])
def test_unsafe_keys_are_refused(key: str, rule: str) -> None:
    with pytest.raises(UnsafeKeyError) as caught:
        local_path(ROOT, key, bucket="acme-inbox")
    message = str(caught.value)
    assert rule in message
    assert "s3://acme-inbox/" in message
    assert len(message) < 400
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(("key", "relative"), SAFE, ids=[repr(k[:24]) for k, _ in SAFE])
def test_safe_keys_map_inside_the_root(key: str, relative: str | None) -> None:
    result = local_path(ROOT, key, bucket="acme-inbox")
    if relative is None:
        assert result is None
        return
    assert result == ROOT / relative
    assert result.parent.is_relative_to(ROOT)
    assert result.relative_to(ROOT).parts == tuple(key.split("/"))
    assert os.path.normpath(result) == str(result)


def test_the_table_is_large_enough() -> None:
    assert len(UNSAFE) + len(SAFE) >= 40
    assert len(UNSAFE) >= 40


def test_path_max_boundary() -> None:
    # Fill root + "/" + key up to exactly PATH_MAX bytes: accepted; one byte more: refused.
    budget = PATH_MAX - ROOT_BYTES - 1
    parts, left = [], budget
    while left > 0:
        take = min(NAME_MAX, left)
        parts.append("p" * take)
        left -= take + 1
    key = "/".join(parts)[:budget]
    assert len(os.fsencode(str(ROOT / key))) == PATH_MAX
    assert local_path(ROOT, key, bucket="b") == ROOT / key
    with pytest.raises(UnsafeKeyError, match="longer than 4095 bytes"):
        local_path(ROOT, key + "p", bucket="b")


def test_error_names_a_truncated_key() -> None:
    key = "../" + "x" * 1000
    with pytest.raises(UnsafeKeyError) as caught:
        local_path(ROOT, key, bucket="b")
    assert "s3://b/../" + "x" * 197 + "..." in str(caught.value)


def test_error_escapes_control_characters() -> None:
    with pytest.raises(UnsafeKeyError) as caught:
        local_path(ROOT, "evil\n{'forged': 1}", bucket="b")
    assert "\n" not in str(caught.value)
    assert "evil\\x0a" in str(caught.value)


def test_filesystem_root() -> None:
    assert local_path(Path("/"), "a/b", bucket="b") == Path("/a/b")
    with pytest.raises(UnsafeKeyError):
        local_path(Path("/"), "../a", bucket="b")


def test_no_filesystem_access(tmp_path: Path) -> None:
    # A symlink under the root is not followed here (the fetcher checks it with I/O).
    (tmp_path / "link").symlink_to("/etc")
    assert local_path(tmp_path, "link/passwd", bucket="b") == tmp_path / "link" / "passwd"
    assert local_path(tmp_path / "missing", "x", bucket="b") == tmp_path / "missing" / "x"
