"""Scrub credential material out of text before it is logged, reported or sent anywhere.

The one home of s3sqsd's redaction: pure functions, patterns only, so they work without knowing
the credentials. Three, because three kinds of text leave the daemon, each with its own shape:

- ``redact``: any text that came from AWS, on its way into a log line or a dead-letter
  attribute. AWS error messages can carry what a signature was computed over:
  SignatureDoesNotMatch from query-protocol services quotes the whole canonical request,
  headers included, so the session token (``x-amz-security-token``) and the access key id
  come back in the error *message*. It keeps the text readable and cuts only the secrets.
- ``hide_url_queries``: an S3 GET's error text, which can quote a presigned URL; every
  parameter of its query may be a credential, so the whole query goes.
- ``hide_access_key_ids``: the preflight report an operator reads, where a refused key id is
  replaced by words that say what was there.
"""

from __future__ import annotations

import re

# Everything AWS appends after these phrases is the request it expected: cut it off.
_CANONICAL_TAIL = re.compile(
    r"(The Canonical String for this request should have been|"
    r"The String-to-Sign should have been|<CanonicalRequest>|<StringToSign>).*",
    re.DOTALL | re.IGNORECASE,
)
_PATTERNS = (
    # header form, as quoted in canonical requests: x-amz-security-token:VALUE
    (re.compile(r"(x-amz-security-token\s*[:=]\s*)[^\s&'\"<>,;]+", re.IGNORECASE), r"\1***"),
    # query form in URLs (presigned): X-Amz-Credential=..., X-Amz-Signature=...
    (
        re.compile(r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s'\"<>]+", re.I),
        r"\1***",
    ),
    # Authorization header: Credential=AKIA.../date/region/svc/aws4_request, Signature=hex
    (re.compile(r"(Credential=)[^,\s'\"<>]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(Signature=)[0-9a-fA-F]{16,}"), r"\1***"),
    (re.compile(r"(<AWSAccessKeyId>)[^<]*(</AWSAccessKeyId>)"), r"\1***\2"),
    # Access key ids (AKIA/ASIA + 16) anywhere, and long secret-looking tokens after "key".
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), "AKIA***"),
    (re.compile(r"(aws_secret_access_key\s*[:=]\s*)\S+", re.IGNORECASE), r"\1***"),
)


# Every pattern above needs one of these words: one search decides, so the ordinary log line
# (one per downloaded file, about ten string fields) costs a single scan, not eight.
_TRIGGER = re.compile(
    r"amz|credential|signature|canonical|string-?to-?sign|accesskey|AKIA|ASIA|secret",
    re.IGNORECASE,
)


def might_need_redaction(text: str) -> bool:
    """False when ``redact(text)`` is certainly ``text`` (none of the trigger words)."""
    return _TRIGGER.search(text) is not None


def redact(text: str) -> str:
    """``text`` without signatures, session tokens, secret keys or access key ids.

    For anything AWS said that reaches a log line or a dead-letter attribute: a canonical
    request or string-to-sign quoted after a SignatureDoesNotMatch is cut off whole, and each
    value below is replaced by ``***``, keeping its name so the line still says what failed.
    """
    if not _TRIGGER.search(text):
        return text
    text = _CANONICAL_TAIL.sub(r"\1 [request redacted]", text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# A URL's query, up to the first character that cannot be in a URL quoted in prose.
_URL_QUERY = re.compile(r"\?[^\s\"'<>]*")


def hide_url_queries(text: str) -> str:
    """``text`` with every URL query replaced by ``?...``.

    For an S3 GET's error text (``verify.remote_error``): a presigned URL carries its
    credential, signature and session token in the query, and any other parameter there may be
    one too, so the whole query goes and the bucket, host and key stay readable.
    """
    return _URL_QUERY.sub("?...", text)


# Key ids of access keys (AKIA long-term, ASIA temporary) and of IAM users (AIDA) and roles
# (AROA): an error message might echo one.
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")


def hide_access_key_ids(text: str) -> str:
    """``text`` with anything shaped like an access key id replaced by ``<access key id>``.

    For the preflight report (``s3sqsd check``), which an operator reads and may paste into a
    ticket: an access key id is half of a credential and names the account's user, so it is
    never shown; the words in its place say that one was there.
    """
    return _ACCESS_KEY_ID.sub("<access key id>", text)
