"""aws.py: the SSE-C key file and the guards added to each S3 operation that accepts them.

The guards are checked on the request botocore is about to send (its ``before-send`` event
answers for the HTTP layer), so no network is used and nothing of boto3 is replaced.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.aws import Aws, read_sse_key
from s3sqsd.config import parse_config
from s3sqsd.errors import ConfigError

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
KEY = bytes(range(32))


def key_file(tmp_path: Path, data: bytes, mode: int = 0o400) -> Path:
    path = tmp_path / "sse-c.key"
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("data", [KEY, base64.b64encode(KEY) + b"\n"])
def test_the_key_is_read_raw_or_base64(tmp_path: Path, data: bytes) -> None:
    assert read_sse_key(key_file(tmp_path, data)) == KEY


@pytest.mark.parametrize(
    ("data", "mode", "expected"),
    [
        (KEY, 0o644, "must be readable by the service only, is mode 0644"),
        (KEY, 0o440, "must be readable by the service only, is mode 0440"),
        (KEY[:16], 0o400, "must hold a 256-bit key"),
        (b"not base64 at all, and not 32 bytes long either", 0o400, "must hold a 256-bit key"),
    ],
)
def test_a_bad_key_file_is_a_config_error_without_its_content(
    tmp_path: Path, data: bytes, mode: int, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read_sse_key(key_file(tmp_path, data, mode))
    text = str(caught.value)
    assert text.startswith("sse_customer_key_file: ")
    assert expected in text
    assert base64.b64encode(KEY[:16]).decode()[:12] not in text
    assert "not base64" not in text


def test_a_missing_key_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sse_customer_key_file: .* cannot be read"):
        read_sse_key(tmp_path / "absent")


def sent_headers(s3: Any, operation: str, **params: Any) -> dict[str, str]:
    """The headers ``operation`` would send, captured at botocore's ``before-send``."""
    seen: dict[str, str] = {}

    class Stop(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        seen.update(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )
        raise Stop

    events = s3.for_bucket(params["Bucket"]).meta.events
    events.register("before-send.s3", capture)
    with pytest.raises(Stop):
        getattr(s3, operation)(**params)
    events.unregister("before-send.s3", capture)
    return seen


def test_each_operation_gets_the_guards_it_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    path = key_file(tmp_path, KEY)
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "routes": [
                {
                    "bucket": "sealed",
                    "download_folder": "/srv/sealed",
                    "expected_bucket_owner": "111122223333",
                    "request_payer": "requester",
                    "sse_customer_key_file": str(path),
                },
                {"download_folder": "/srv/rest"},
            ],
        }
    )
    s3 = Aws(config, environ={}).s3()
    get = sent_headers(s3, "get_object", Bucket="sealed", Key="k")
    assert get["x-amz-expected-bucket-owner"] == "111122223333"
    assert get["x-amz-request-payer"] == "requester"
    assert get["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    assert get["x-amz-server-side-encryption-customer-key"] == base64.b64encode(KEY).decode()
    listing = sent_headers(s3, "list_objects_v2", Bucket="sealed")
    assert listing["x-amz-expected-bucket-owner"] == "111122223333"
    assert listing["x-amz-request-payer"] == "requester"
    assert "x-amz-server-side-encryption-customer-key" not in listing  # a listing takes none
    head_bucket = sent_headers(s3, "head_bucket", Bucket="sealed")
    assert head_bucket["x-amz-expected-bucket-owner"] == "111122223333"
    assert "x-amz-request-payer" not in head_bucket
    # A call that sets a guard itself keeps its own value; another bucket gets none.
    own = sent_headers(
        s3, "head_object", Bucket="sealed", Key="k", ExpectedBucketOwner="999999999999"
    )
    assert own["x-amz-expected-bucket-owner"] == "999999999999"
    other = sent_headers(s3, "get_object", Bucket="open", Key="k")
    assert not {h for h in other if "expected-bucket-owner" in h or "customer" in h or "payer" in h}
