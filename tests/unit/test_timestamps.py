"""The response timestamp parser: S3's two forms read directly, everything else botocore's."""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from s3sqsd.aws import make_clients
from s3sqsd.config import Config
from s3sqsd.timestamps import parse_timestamp

UTC = datetime.UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", datetime.datetime(2015, 10, 21, 7, 28, tzinfo=UTC)),
        ("Sun, 01 Jan 2006 00:00:59 GMT", datetime.datetime(2006, 1, 1, 0, 0, 59, tzinfo=UTC)),
        ("Thu, 29 Feb 2024 23:59:59 GMT", datetime.datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("2015-10-21T07:28:00.000Z", datetime.datetime(2015, 10, 21, 7, 28, tzinfo=UTC)),
        ("2015-10-21T07:28:00Z", datetime.datetime(2015, 10, 21, 7, 28, tzinfo=UTC)),
        ("2015-10-21T07:28:00.1Z", datetime.datetime(2015, 10, 21, 7, 28, 0, 100000, tzinfo=UTC)),
        (
            "2015-10-21T07:28:00.123456Z",
            datetime.datetime(2015, 10, 21, 7, 28, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_s3_forms_are_read_as_utc(text: str, expected: datetime.datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == datetime.timedelta(0)
    assert parsed == botocore_parse_timestamp(text)  # the same instant botocore gives


@pytest.mark.parametrize(
    "value",
    [
        "2015-10-21T07:28:00+02:00",  # an offset: not S3's form
        "Wed, 21 Oct 2015 07:28:00 +0000",
        "2015-10-21T07:28:00.1234567Z",  # more digits than a datetime holds
        "1445412480",
        1445412480,
        1445412480.5,
        "Wednesday, 21-Oct-15 07:28:00 GMT",  # RFC 850
    ],
)
def test_other_forms_are_botocores(value: Any) -> None:
    assert parse_timestamp(value) == botocore_parse_timestamp(value)


@pytest.mark.parametrize(
    "text",
    [
        "Wed, 31 Feb 2015 07:28:00 GMT",  # no such day
        "Wed, 21 Foo 2015 07:28:00 GMT",  # no such month
        "Wed, 21 Oct 2015 07:28:60 GMT",
        "2015-10-21T24:00:00Z",
        "2015-13-01T00:00:00Z",
        "not a time",
    ],
)
def test_what_botocore_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid timestamp"):
        botocore_parse_timestamp(text)
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_timestamp(text)


def test_the_clients_parse_a_get_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GetObject answer through the daemon's real S3 client: LastModified comes out aware
    and right, parsed by s3sqsd's parser (the HTTP call itself is stubbed)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    calls: list[Any] = []

    def counted(value: Any) -> datetime.datetime:
        calls.append(value)
        return parse_timestamp(value)

    monkeypatch.setattr("s3sqsd.aws.parse_timestamp", counted)
    config = Config(
        sqs_queue_url="http://127.0.0.1:9/000000000000/q",
        aws_region="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        download_folder=Path("/x"),
    )
    s3 = make_clients(config).s3.for_bucket("b")

    class Raw(io.BytesIO):
        def stream(self, amt: int = 1024, decode_content: bool | None = None) -> Any:
            yield self.read()

    def answer(request: Any, **_: Any) -> AWSResponse:
        headers = HTTPHeaders()
        headers["Last-Modified"] = "Wed, 21 Oct 2015 07:28:00 GMT"
        headers["Content-Length"] = "2"
        return AWSResponse(request.url, 200, headers, Raw(b"hi"))

    s3.meta.events.register_first("before-send.s3.GetObject", answer)
    response = s3.get_object(Bucket="b", Key="k")
    assert response["LastModified"] == datetime.datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert calls == ["Wed, 21 Oct 2015 07:28:00 GMT"]
