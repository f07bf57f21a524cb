"""Scrub credential material out of text before it is logged or sent anywhere.

AWS error messages can carry what a signature was computed over: SignatureDoesNotMatch from
query-protocol services quotes the whole canonical request, headers included, so the session
token (``x-amz-security-token``) and the access key id come back in the error *message*. Any
text that came from AWS passes through ``redact`` before it reaches a log line or a
dead-letter attribute. Pure: patterns only, so it works without knowing the credentials.
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
    """``text`` without signatures, tokens or access key ids (see the module docstring)."""
    if not _TRIGGER.search(text):
        return text
    text = _CANONICAL_TAIL.sub(r"\1 [request redacted]", text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
