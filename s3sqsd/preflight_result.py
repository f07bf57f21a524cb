"""The checklist's line and report types, shared by preflight.py and preflight_aws.py."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from s3sqsd.redact import hide_access_key_ids


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"  # not checked: nothing to check, or an earlier FAIL makes it pointless


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the checklist."""

    name: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.value:<4}  {self.name:<14} {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    results: tuple[CheckResult, ...]

    @property
    def failed(self) -> bool:
        return any(r.verdict is Verdict.FAIL for r in self.results)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for r in self.results if r.verdict is verdict)

    def summary(self) -> str:
        fails, warns = self.count(Verdict.FAIL), self.count(Verdict.WARN)
        warned = f"{warns} warning{'s' if warns != 1 else ''}"
        if fails:
            return (
                f"s3sqsd: {fails} check{'s' if fails != 1 else ''} FAILED, {warned}; "
                "s3sqsd cannot work as configured"
            )
        if warns:
            return f"s3sqsd: no failures, {warned}"
        return "s3sqsd: all checks passed"

    def lines(self) -> list[str]:
        return [r.line() for r in self.results] + [self.summary()]


def error_text(exc: BaseException) -> str:
    """``exc`` as one line for the report, without access key ids (``hide_access_key_ids``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return hide_access_key_ids(text)
