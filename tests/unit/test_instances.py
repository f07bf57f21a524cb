"""s3sqsd --instance NAME: the file, the default folder and the unit an instance of
s3sqsd@.service has (tests/system/test_static.py checks them against the unit file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3sqsd.cli import _parser, _service, main
from s3sqsd.config import DEFAULT_DOWNLOAD_FOLDER
from s3sqsd.daemon import EXIT_CONFIG
from s3sqsd.errors import ConfigError
from s3sqsd.instances import Service, instance_service

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/s3sqsd-events"


def chosen(*argv: str) -> Service:
    return _service(_parser().parse_args(argv))


def test_an_instance_has_its_own_file_folder_and_unit() -> None:
    assert instance_service("eu-inbox") == Service(
        config_path=Path("/etc/s3sqsd/eu-inbox.yaml"),
        default_download_folder=Path("/var/lib/s3sqsd-eu-inbox/downloads"),
        unit="s3sqsd@eu-inbox",
        instance="eu-inbox",
    )
    a, b = instance_service("a"), instance_service("b")
    assert a.default_download_folder != b.default_download_folder
    for one in (a, b):  # neither inside the plain unit's folder, nor the other's
        assert not one.default_download_folder.is_relative_to(DEFAULT_DOWNLOAD_FOLDER.parent)


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "a/b", "../etc", "a\\x20b", "a b", "x" * 65, "ünï"]
)
def test_a_name_that_cannot_be_an_instance_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is not an instance name"):
        instance_service(name)


@pytest.mark.parametrize("argv", [("--instance", "feed"), ("run", "--instance", "feed")])
def test_instance_on_the_command_line(argv: tuple[str, ...]) -> None:
    assert chosen(*argv) == instance_service("feed")


def test_config_overrides_the_instance_file_not_its_folder() -> None:
    service = chosen("check", "--instance", "feed", "--config", "/srv/feed.yaml")
    assert service.config_path == Path("/srv/feed.yaml")
    assert service.default_download_folder == Path("/var/lib/s3sqsd-feed/downloads")


def test_the_instance_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3SQSD_CONFIG", "/etc/s3sqsd/other.yaml")
    assert chosen("sync", "--instance", "feed").config_path == Path("/etc/s3sqsd/feed.yaml")
    assert chosen("sync") == Service(config_path=Path("/etc/s3sqsd/other.yaml"))


def test_without_an_instance_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3SQSD_CONFIG", raising=False)
    assert chosen() == Service(config_path=Path("/etc/s3sqsd/config.yaml"))
    assert chosen().default_download_folder == DEFAULT_DOWNLOAD_FOLDER
    assert chosen("--config", "/x.yaml").unit == "s3sqsd"


def test_check_config_uses_the_instance_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "feed.yaml"
    path.write_text(f"sqs_queue_url: {QUEUE}\n")
    assert main(["check-config", "--instance", "feed", "--config", str(path)]) == 0
    service = chosen("--instance", "feed", "--config", str(path))
    assert service.load().download_folder == Path("/var/lib/s3sqsd-feed/downloads")
    assert "configuration is valid" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["check-config"], ["check"], ["sync"]])
def test_a_bad_instance_name_is_a_configuration_error(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """78, so systemd does not restart-loop on `systemctl start 's3sqsd@a b'`."""
    assert main([*command, "--instance", "a/b"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "'a/b' is not an instance name" in err
