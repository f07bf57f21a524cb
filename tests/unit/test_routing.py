"""Routing: which route takes an object, the path part below its folder, the command it gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from s3sqsd.config import CommandConfig, Config, parse_config
from s3sqsd.errors import UnsafeKeyError
from s3sqsd.routing import Placement, download_folders, matches, route

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/s3sqsd-events"
TOP = CommandConfig(("/usr/local/bin/top",))
REPORTS = CommandConfig(("/usr/local/bin/reports", "--fast"), 10.0)


def config(**data: Any) -> Config:
    return parse_config({"sqs_queue_url": QUEUE, **data})


ROUTED = config(
    on_download={"command": list(TOP.command)},
    unrouted="dead_letter",
    routes=[
        {
            "bucket": "inbox",
            "prefix": "reports/",
            "strip_prefix": True,
            "download_folder": "/srv/reports",
            "on_download": {"command": list(REPORTS.command), "timeout_seconds": 10},
        },
        {"bucket": "inbox", "prefix": "raw/", "download_folder": "/srv/raw"},
        {"glob": "*.jpg", "download_folder": "/srv/images"},
        {"bucket": "media", "glob": "video/*/[0-9]?.mp4", "download_folder": "/srv/video"},
        {"bucket": "archive", "download_folder": "/srv/raw"},
    ],
)


def placed(
    folder: str, key_path: str | None, command: CommandConfig | None, index: int | None
) -> Placement[Path]:
    """A routing answer, short enough for a table row; key_path None: the key, not stripped."""
    return Placement(folder=Path(folder), key_path=key_path, on_download=command, route_index=index)


# (bucket, key, expected placement or None)
TABLE: list[tuple[str, str, Placement[Path] | None]] = [
    # route 0: bucket + prefix, stripped, its own command
    ("inbox", "reports/2024/q1.pdf", placed("/srv/reports", "2024/q1.pdf", REPORTS, 0)),
    ("inbox", "reports/a.jpg", placed("/srv/reports", "a.jpg", REPORTS, 0)),
    ("inbox", "reports/", placed("/srv/reports", "", REPORTS, 0)),  # the folder marker
    ("inbox", "reports/sub/", placed("/srv/reports", "sub/", REPORTS, 0)),
    # route 1: not stripped, the top-level command
    ("inbox", "raw/x.bin", placed("/srv/raw", None, TOP, 1)),
    # prefixes are case-sensitive and compared on the decoded key
    ("inbox", "Reports/x.pdf", None),
    ("inbox", "reports", None),
    ("other", "reports/x.pdf", None),
    # route 2: a glob on the whole key; '*' crosses '/'
    ("inbox", "pics/2024/a.jpg", placed("/srv/images", None, TOP, 2)),
    ("any", "a.jpg", placed("/srv/images", None, TOP, 2)),
    ("any", "a.JPG", None),  # case-sensitive
    ("any", "a.jpg.txt", None),  # the whole key must match
    # route 3: bucket + glob with '?' and a character class
    ("media", "video/2024/07.mp4", placed("/srv/video", None, TOP, 3)),
    ("media", "video/2024/x7.mp4", None),
    ("media", "video/a/b/12.mp4", placed("/srv/video", None, TOP, 3)),
    # route 4: a whole bucket, sharing route 1's folder
    ("archive", "2020/old.tar", placed("/srv/raw", None, TOP, 4)),
    # nothing matches
    ("unknown", "x.txt", None),
]


@pytest.mark.parametrize(("bucket", "key", "expected"), TABLE)
def test_route_table(bucket: str, key: str, expected: Placement[Path] | None) -> None:
    assert route(bucket, key, config=ROUTED) == expected


def test_without_routes_everything_goes_to_download_folder() -> None:
    plain = config(download_folder="/srv/in", on_download={"command": ["/bin/true"]})
    for bucket, key in [("a", "x"), ("b", "deep/er/y.txt"), ("c", "dir/")]:
        assert route(bucket, key, config=plain) == placed(
            "/srv/in", None, CommandConfig(("/bin/true",)), None
        )


def test_without_anything_it_is_todays_behaviour() -> None:
    target = route("b", "k", config=config())
    assert target == placed("/var/lib/s3sqsd/downloads", None, None, None)


def test_first_matching_route_wins() -> None:
    cfg = config(
        routes=[
            {"prefix": "a/b/", "download_folder": "/srv/one"},
            {"prefix": "a/", "download_folder": "/srv/two"},
            {"download_folder": "/srv/rest"},
        ]
    )
    assert [
        (t.route_index, t.folder) if (t := route("b", key, config=cfg)) else None
        for key in ("a/b/c", "a/c", "c")
    ] == [(0, Path("/srv/one")), (1, Path("/srv/two")), (2, Path("/srv/rest"))]


def test_route_without_command_and_no_top_level_command() -> None:
    cfg = config(routes=[{"download_folder": "/srv/a"}])
    assert route("b", "k", config=cfg) == placed("/srv/a", None, None, 0)


@pytest.mark.parametrize(
    ("rule", "bucket", "key", "expected"),
    [
        ({}, "any", "any/key", True),
        ({"bucket": "b"}, "b", "k", True),
        ({"bucket": "b"}, "bb", "k", False),
        ({"prefix": "a b/"}, "b", "a b/c", True),  # keys are decoded: '+' was a space
        ({"prefix": "a+b/"}, "b", "a b/c", False),
        ({"glob": "*"}, "b", "x/y/z", True),
        ({"glob": "*/z"}, "b", "x/y/z", True),
        ({"glob": "x/?/z"}, "b", "x/y/z", True),
        ({"glob": "x/?/z"}, "b", "x/yy/z", False),
        ({"glob": "[!.]*"}, "b", ".hidden", False),
        ({"glob": "[abc"}, "b", "[abc", True),  # an unclosed '[' is a literal
        ({"bucket": "b", "prefix": "p/", "glob": "*.csv"}, "b", "p/x.csv", True),
        ({"bucket": "b", "prefix": "p/", "glob": "*.csv"}, "b", "q/x.csv", False),
        ({"bucket": "b", "prefix": "p/", "glob": "*.csv"}, "c", "p/x.csv", False),
    ],
)
def test_matchers(rule: dict[str, Any], bucket: str, key: str, expected: bool) -> None:
    cfg = config(routes=[{"download_folder": "/srv/a", **rule}])
    assert matches(cfg.routes[0], bucket, key) is expected


class TestLocalPath:
    def test_plain_key(self) -> None:
        target = route("inbox", "raw/x.bin", config=ROUTED)
        assert target is not None
        assert target.local_path(bucket="inbox", key="raw/x.bin") == Path("/srv/raw/raw/x.bin")

    def test_stripped_key(self) -> None:
        target = route("inbox", "reports/2024/q1.pdf", config=ROUTED)
        assert target is not None
        assert target.local_path(bucket="inbox", key="reports/2024/q1.pdf") == Path(
            "/srv/reports/2024/q1.pdf"
        )

    @pytest.mark.parametrize("key", ["reports/", "reports/sub/"])
    def test_folder_markers_need_no_download(self, key: str) -> None:
        target = route("inbox", key, config=ROUTED)
        assert target is not None
        assert target.local_path(bucket="inbox", key=key) is None

    @pytest.mark.parametrize(
        ("key", "rule"),
        [
            ("reports//etc/passwd", "absolute path"),
            ("reports/../x", "'..' path component"),
            ("reports/.s3sqsd-tmp/x", "reserved for the daemon's temporary files"),
            ("reports/a\nb", "control character"),
        ],
    )
    def test_path_safety_applies_after_stripping(self, key: str, rule: str) -> None:
        target = route("inbox", key, config=ROUTED)
        assert target is not None
        with pytest.raises(UnsafeKeyError) as info:
            target.local_path(bucket="inbox", key=key)
        text = str(info.value)
        assert rule in text
        assert "with the prefix of routes[0] stripped" in text
        assert "s3://inbox/reports/" in text

    def test_unsafe_unstripped_key_has_the_usual_message(self) -> None:
        target = route("inbox", "raw/../x", config=ROUTED)
        assert target is not None
        with pytest.raises(UnsafeKeyError) as info:
            target.local_path(bucket="inbox", key="raw/../x")
        assert str(info.value) == "unsafe key s3://inbox/raw/../x: '..' path component"


def test_download_folders() -> None:
    assert download_folders(ROUTED) == (
        Path("/srv/reports"),
        Path("/srv/raw"),
        Path("/srv/images"),
        Path("/srv/video"),
    )
    assert download_folders(config(download_folder="/srv/x")) == (Path("/srv/x"),)
