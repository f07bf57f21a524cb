"""Property tests for the whole parsing chain a key goes through before any I/O:
message body -> parse_message -> local_path, for S3 notifications sent directly, through an
SNS envelope and through EventBridge.

test_parsing_properties.py checks each stage on its own (the parser raises only its own
errors; local_path never leaves the root). These check the chain: however a key is spelled
(percent-encoded in part or in full, upper or lower case, '+' for spaces), the verdict is the
verdict on the decoded key, it is the same in every message shape, and an accepted key maps
to exactly ``root / decoded key``, one literal segment per '/'-separated part.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from s3sqsd.errors import KeyDecodingError, UnsafeKeyError
from s3sqsd.events import KeyDecoding, KeyDecodingPolicy, decode_key, parse_message
from s3sqsd.paths import TEMP_DIR_NAME, local_path
from tests.support.events import eventbridge_body, s3_body, sns_envelope

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUCKET = "bkt"
ROOTS = st.sampled_from(
    [Path("/srv/s3sqsd/downloads"), Path("/d"), Path("/var/lib/s3sqsd/" + "r" * 200)]
)
PIECES = [
    "..", ".", "/", "//", "\\", "a", "b", "é", " ", "~", "+", "%", "%2", "%ZZ",
    "\x00", "\x01", "\n", "\x7f", "\x85", "\ud800", "\ufffe", "\u2025", "\uff0e",
    TEMP_DIR_NAME, "x" * 120, "\N{PILE OF POO}" * 20,
]  # fmt: skip
hostile_text = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
any_text = st.text(max_size=40)
keys = hostile_text | any_text


def _s3_body(raw_key: str) -> str:
    return s3_body(raw_key, bucket=BUCKET, size=8)


def _sns_body(raw_key: str) -> str:
    return sns_envelope(_s3_body(raw_key))


def _eventbridge_body(raw_key: str) -> str:
    return eventbridge_body(BUCKET, raw_key, size=8)


SHAPES = (_s3_body, _sns_body, _eventbridge_body)


def _verdict(body: str, root: Path) -> tuple[str, str | Path | None]:
    """("refused", reason) or ("path", the path or None for a folder marker)."""
    error: KeyDecodingError | UnsafeKeyError | None
    try:
        parsed = parse_message(body, decoding=KeyDecodingPolicy())
        (obj,) = parsed.created
        path = local_path(root, obj.key, bucket=obj.bucket)
    except (KeyDecodingError, UnsafeKeyError) as exc:  # nothing else may escape
        error = exc
    else:
        error = None
    if error is not None:
        assert "s3://bkt/" in str(error)
        assert "\n" not in str(error)
        return "refused", error.reason
    if path is not None:
        assert path.is_relative_to(root)
        assert path != root
        assert os.path.normpath(path) == str(path)
        assert os.path.commonpath([root, os.path.normpath(path)]) == str(root)
        assert path.relative_to(root).parts == tuple(obj.key.split("/"))
        assert not any(part in ("", ".", "..") for part in obj.key.split("/"))
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in obj.key)
        assert path.relative_to(root).parts[0] != TEMP_DIR_NAME
    return "path", path


def _key_verdict(key: str, root: Path) -> tuple[str, str | Path | None]:
    """The verdict on an already decoded key."""
    try:
        return "path", local_path(root, key, bucket=BUCKET)
    except UnsafeKeyError as exc:
        return "refused", exc.reason


def _encode_some(key: str, choices: list[bool], upper: bool) -> str:
    """Percent-encode the characters picked by ``choices`` (always '%' and '+', which would
    otherwise be read as an escape or a space); the rest stay literal."""
    out = []
    for index, char in enumerate(key):
        if char in "%+" or choices[index % len(choices)]:
            text = "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
            out.append(text if upper else text.lower())
        else:
            out.append(char)
    return "".join(out)


@SETTINGS
@given(raw=keys, root=ROOTS)
@example(raw="..%2Fx", root=Path("/d"))
@example(raw="%2E%2E/x", root=Path("/d"))
@example(raw=".%2e/x", root=Path("/d"))
@example(raw="%2Fetc%2Fpasswd", root=Path("/d"))
@example(raw="a%2F%2Fb", root=Path("/d"))
@example(raw="%C0%AE%C0%AE/x", root=Path("/d"))
@example(raw="..%5C..%5Cx", root=Path("/d"))
def test_raw_keys_same_verdict_in_every_shape(raw: str, root: Path) -> None:
    """Any raw key string, as sent: one verdict for all three message shapes, and an accepted
    key maps inside the root."""
    verdicts = {_verdict(shape(raw), root) for shape in SHAPES}
    assert len(verdicts) == 1, verdicts


@SETTINGS
@given(
    key=keys.filter(lambda k: "\x00" not in k),
    choices=st.lists(st.booleans(), min_size=1, max_size=8),
    upper=st.booleans(),
    root=ROOTS,
)
@example(key="../x", choices=[False, True], upper=True, root=Path("/d"))  # .%2E/x
@example(key="../x", choices=[True], upper=False, root=Path("/d"))  # %2e%2e%2fx
@example(key="/etc/passwd", choices=[True, False], upper=True, root=Path("/d"))
@example(key="a//b", choices=[False, True], upper=True, root=Path("/d"))
def test_every_spelling_of_a_key_gets_the_verdict_of_the_key(
    key: str, choices: list[bool], upper: bool, root: Path
) -> None:
    """A key percent-encoded in part or in full decodes to itself, and the chain decides
    exactly what local_path decides for the plain key: encoding never turns a refused key
    into an accepted one (or moves an accepted one)."""
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in key))  # not encodable as UTF-8
    raw = _encode_some(key, choices, upper)
    assert decode_key(raw, KeyDecoding.URL) == key
    expected = _key_verdict(key, root)
    for shape in SHAPES:
        assert _verdict(shape(raw), root) == expected


@SETTINGS
@given(key=keys, root=ROOTS)
@example(key="a b+c", root=Path("/d"))
def test_form_encoded_keys_round_trip_through_the_chain(key: str, root: Path) -> None:
    """S3's own encoding (quote_plus, '/' kept or encoded): the chain sees the original key."""
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in key))  # not encodable as UTF-8
    encoded = [quote_plus(key, safe="/"), quote_plus(key, safe=""), quote(key, safe="")]
    for raw in encoded:
        if "\x00" in key:
            assert _verdict(_s3_body(raw), root) == ("refused", "bad_key_encoding")
        else:
            assert _verdict(_s3_body(raw), root) == _key_verdict(key, root)


@SETTINGS
@given(a=hostile_text, b=hostile_text, root=ROOTS)
@example(a="a/b", b="a//b", root=Path("/d"))
@example(a="a+b", b="a b", root=Path("/d"))
def test_different_keys_never_share_a_file(a: str, b: str, root: Path) -> None:
    """Two keys that both map are the same file only when they are the same key."""
    va, vb = _key_verdict(a, root), _key_verdict(b, root)
    if va[0] == vb[0] == "path" and va[1] is not None and vb[1] is not None:
        assert (va[1] == vb[1]) == (a == b)
