"""The timestamp parser s3sqsd's botocore sessions use for responses (aws.py installs it).

botocore parses every timestamp of a response with ``dateutil``: about 0.1 ms of CPU per value
on the development machine, paid once per file for a GET's ``Last-Modified`` header and once
per key of a listing page. S3 writes its timestamps in two fixed forms: the HTTP date of a
header (``Wed, 21 Oct 2015 07:28:00 GMT``, RFC 7231's IMF-fixdate) and the ISO 8601 UTC time of
an XML body (``2015-10-21T07:28:00.000Z``). ``parse_timestamp`` reads exactly these two forms
itself (a few microseconds) and hands every other value, unchanged, to botocore's own parser,
so what it accepts, returns or refuses for anything else is botocore's.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from botocore.utils import parse_timestamp as botocore_parse_timestamp

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_HTTP_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z][a-z]) (\d{4}) (\d\d):(\d\d):(\d\d) GMT",
    re.ASCII,
)
_ISO_UTC = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z",
    re.ASCII,
)


def parse_timestamp(value: Any) -> datetime.datetime:
    """``value`` as an aware datetime: S3's two forms here (UTC), anything else by botocore."""
    if isinstance(value, str):
        try:
            if (match := _HTTP_DATE.fullmatch(value)) is not None:
                day, month, year, hour, minute, second = match.groups()
                return datetime.datetime(
                    int(year),
                    _MONTHS[month],
                    int(day),
                    int(hour),
                    int(minute),
                    int(second),
                    tzinfo=datetime.UTC,
                )
            if (match := _ISO_UTC.fullmatch(value)) is not None:
                year, month, day, hour, minute, second, fraction = match.groups()
                return datetime.datetime(
                    int(year),
                    int(month),
                    int(day),
                    int(hour),
                    int(minute),
                    int(second),
                    int(fraction.ljust(6, "0")) if fraction else 0,
                    tzinfo=datetime.UTC,
                )
        except (KeyError, ValueError):
            pass  # not a month name, or not a date (31 Feb): botocore's answer, or its error
    return botocore_parse_timestamp(value)  # type: ignore[no-any-return]
