"""Checks on the unit file, the packaging and the man pages that need no container.

They run in every test run (no ``system`` marker): they keep the shipped unit in step with the
daemon's configuration defaults, and the docs in step with the configuration keys.
"""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

import s3sqsd
from s3sqsd.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_DOWNLOAD_FOLDER,
    AwsConfig,
    Config,
    LargeObjectsConfig,
    RetryConfig,
    RoleConfig,
)
from s3sqsd.events import KeyDecodingPolicy
from s3sqsd.instances import instance_service

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "systemd" / "s3sqsd.service"
TEMPLATE_FILE = REPO / "systemd" / "s3sqsd@.service"
UNIT_FILES = (UNIT_FILE, TEMPLATE_FILE)
DEBIAN = REPO / "packaging" / "debian"
MAN = REPO / "packaging" / "man"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: sections of keys that may repeat (each value kept, in order)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {raw!r} outside a section"
        assert "=" in line, f"{path}: {raw!r} is not key=value"
        key, value = (part.strip() for part in line.split("=", 1))
        current.setdefault(key, []).append(value)
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as ``60s``, ``1min 30s`` or ``90``, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def default(cls: type, name: str) -> object:
    """A dataclass field's default (class attributes of slotted dataclasses are descriptors)."""
    for item in fields(cls):
        if item.name == name:
            if item.default is not MISSING:
                return item.default
            if item.default_factory is not MISSING:
                return item.default_factory()
    raise AssertionError(f"{cls.__name__} has no field {name}")


@pytest.fixture(scope="module", params=UNIT_FILES, ids=lambda path: path.name)
def service(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """The [Service] section of each shipped unit: the plain one and the template."""
    return parse_unit(request.param)["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key)
    assert values, f"the unit has no {key}="
    return values[-1]


class TestUnitMatchesConfig:
    """The unit's timeouts follow the daemon's defaults; change one, this test says which."""

    def test_stop_timeout_covers_drain_and_a_long_poll(self, service: dict[str, list[str]]) -> None:
        """TimeoutStopSec >= drain + long poll + 10 s, so systemd never SIGKILLs a drain."""
        drain = float(default(Config, "shutdown_timeout_seconds"))  # type: ignore[arg-type]
        poll = float(default(Config, "wait_time_seconds"))  # type: ignore[arg-type]
        stop = seconds(one(service, "TimeoutStopSec"))
        assert stop >= drain + poll + 10, (stop, drain, poll)

    def test_stop_timeout_is_not_far_above_the_drain(self, service: dict[str, list[str]]) -> None:
        """A stop timeout far beyond the drain only delays shutdowns: keep the two in step."""
        drain = float(default(Config, "shutdown_timeout_seconds"))  # type: ignore[arg-type]
        poll = float(default(Config, "wait_time_seconds"))  # type: ignore[arg-type]
        assert seconds(one(service, "TimeoutStopSec")) <= drain + poll + 30

    def test_watchdog_leaves_room_for_pings(self, service: dict[str, list[str]]) -> None:
        """The loop pings every WatchdogSec/2; the long poll has its own thread."""
        assert 10 <= seconds(one(service, "WatchdogSec")) <= 120

    def test_default_paths_match_the_unit(self) -> None:
        service = parse_unit(UNIT_FILE)["Service"]
        assert one(service, "ExecStart") == f"/usr/bin/s3sqsd --config {DEFAULT_CONFIG_PATH}"
        state = Path("/var/lib") / one(service, "StateDirectory")
        assert DEFAULT_DOWNLOAD_FOLDER.parent == state

    @pytest.mark.parametrize("name", ["feed", "eu-west.inbox_2"])
    def test_instance_paths_match_the_template(self, name: str) -> None:
        """The file --instance NAME reads is /etc/s3sqsd/NAME.yaml, and its default folder is
        inside the template's StateDirectory for that instance, which the sandbox may write."""
        service = parse_unit(TEMPLATE_FILE)["Service"]
        command = [arg.replace("%i", name) for arg in shlex.split(one(service, "ExecStart"))]
        assert command == ["/usr/bin/s3sqsd", "--instance", name]
        from s3sqsd.cli import _parser, _service

        chosen = _service(_parser().parse_args(command[1:]))
        assert chosen == instance_service(name)
        assert chosen.config_path == DEFAULT_CONFIG_PATH.parent / f"{name}.yaml"
        state = Path("/var/lib") / one(service, "StateDirectory").replace("%i", name)
        assert chosen.default_download_folder == state / DEFAULT_DOWNLOAD_FOLDER.name
        assert chosen.unit == f"s3sqsd@{name}"


class TestUnitContract:
    """What the issue asks of the unit, stated once so an edit cannot drop it silently."""

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("Restart", "on-failure"),
            ("RestartPreventExitStatus", "78"),
            ("ExecReload", "/bin/kill -HUP $MAINPID"),
            ("User", "s3sqsd"),
            ("Group", "s3sqsd"),
            ("StateDirectoryMode", "0750"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
        ],
    )
    def test_directive(self, service: dict[str, list[str]], key: str, value: str) -> None:
        assert one(service, key) == value

    @pytest.mark.parametrize("path", UNIT_FILES, ids=lambda path: path.name)
    def test_documentation_names_the_man_page(self, path: Path) -> None:
        unit = parse_unit(path)["Unit"]
        assert "man:s3sqsd(8)" in one(unit, "Documentation").split()

    def test_plain_unit_state_and_environment(self) -> None:
        service = parse_unit(UNIT_FILE)["Service"]
        assert service["StateDirectory"] == ["s3sqsd"]
        assert service["EnvironmentFile"] == ["-/etc/default/s3sqsd"]
        assert "SyslogIdentifier" not in service  # the default: the program's name, s3sqsd


class TestTemplateInStep:
    """s3sqsd@.service is s3sqsd.service but for the lines that name the instance: a setting
    (hardening, timeouts, restart policy) changed in one file and not the other fails here."""

    # (section, key): what an instance has of its own; everything else is the same.
    INSTANCE_LINES = {
        ("Unit", "Description"): None,  # checked below: it names the instance
        ("Service", "ExecStart"): ["/usr/bin/s3sqsd --instance %i"],
        ("Service", "EnvironmentFile"): ["-/etc/default/s3sqsd", "-/etc/default/s3sqsd@%i"],
        ("Service", "SyslogIdentifier"): ["s3sqsd@%i"],
        ("Service", "StateDirectory"): ["s3sqsd-%i"],
    }

    def test_every_other_line_is_the_plain_units(self) -> None:
        plain, template = parse_unit(UNIT_FILE), parse_unit(TEMPLATE_FILE)
        assert plain.keys() == template.keys()
        differ = []
        for section in plain:
            for key in plain[section].keys() | template[section].keys():
                if (section, key) in self.INSTANCE_LINES:
                    continue
                if plain[section].get(key) != template[section].get(key):
                    differ.append(
                        (section, key, plain[section].get(key), template[section].get(key))
                    )
        assert differ == [], "s3sqsd.service and s3sqsd@.service drifted apart"

    def test_the_instance_lines(self) -> None:
        template = parse_unit(TEMPLATE_FILE)
        for (section, key), wanted in self.INSTANCE_LINES.items():
            if wanted is not None:
                assert template[section].get(key) == wanted, key
        assert "%i" in one(template["Unit"], "Description")

    def test_the_template_names_no_fixed_state_or_config(self) -> None:
        """No instance may fall back on the plain unit's file or folder by a leftover line."""
        text = "\n".join(
            line
            for line in TEMPLATE_FILE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
        assert "/etc/s3sqsd/config.yaml" not in text
        assert "/var/lib/s3sqsd/" not in text

    def test_exit_status_78_is_the_config_error_status(self) -> None:
        from s3sqsd.daemon import EXIT_CONFIG

        assert EXIT_CONFIG == 78


class TestPackaging:
    def test_every_unit_is_installed(self) -> None:
        """The .deb ships both units; dh_installsystemd enables and starts neither (it skips
        templates, and --no-enable --no-start covers the plain unit)."""
        installed = {
            line.split()[0]
            for line in (DEBIAN / "s3sqsd.install").read_text().splitlines()
            if line.startswith("systemd/")
        }
        assert installed == {f"systemd/{path.name}" for path in (REPO / "systemd").glob("*")}
        assert installed == {f"systemd/{path.name}" for path in UNIT_FILES}
        rules = (DEBIAN / "rules").read_text()
        assert re.search(r"dh_installsystemd .*--no-enable --no-start", rules)

    @pytest.mark.parametrize(
        ("script", "command"),
        [
            ("prerm", "deb-systemd-invoke stop s3sqsd.service 's3sqsd@*.service'"),
            ("postinst", "deb-systemd-invoke try-restart 's3sqsd@*.service'"),
        ],
    )
    def test_maintainer_scripts_handle_the_instances(self, script: str, command: str) -> None:
        """dh_installsystemd writes nothing for a template's instances: these lines do."""
        assert command in (DEBIAN / script).read_text()

    def test_changelog_version_is_the_python_version(self) -> None:
        first = (DEBIAN / "changelog").read_text().splitlines()[0]
        match = re.match(r"s3sqsd \(([^)]+)\)", first)
        assert match, first
        assert match.group(1) == s3sqsd.__version__

    def test_runtime_dependencies_are_distro_packages(self) -> None:
        control = (DEBIAN / "control").read_text()
        depends = re.search(r"^Depends:(.*?)(?=^\S|\Z)", control, re.M | re.S)
        assert depends
        names = {d.strip().split()[0] for d in depends.group(1).split(",") if d.strip()}
        wanted = {"python3-boto3", "python3-yaml", "python3-sdnotify", "python3-pythonjsonlogger"}
        assert wanted <= names
        assert {"${python3:Depends}", "${misc:Depends}"} <= names
        assert "procps" in names  # /bin/kill, used by ExecReload

    def test_setup_cfg_requirements_have_a_debian_package(self) -> None:
        """Every install_requires entry maps to one of the Depends above."""
        parser = configparser.ConfigParser()
        parser.read(REPO / "setup.cfg")
        requires = [
            re.split(r"[<>=!~ ]", line.strip())[0].lower()
            for line in parser["options"]["install_requires"].splitlines()
            if line.strip()
        ]
        debian = {
            "boto3": "python3-boto3",
            "pyyaml": "python3-yaml",
            "sdnotify": "python3-sdnotify",
            "python-json-logger": "python3-pythonjsonlogger",
        }
        control = (DEBIAN / "control").read_text()
        for name in requires:
            assert name in debian, f"no Debian package known for {name}; add it to control"
            assert debian[name] in control

    def test_setup_cfg_ships_every_package(self) -> None:
        """setup.cfg lists the packages by hand (pybuild builds the .deb from it): a new
        sub-package missing there would be left out of the .deb, and s3sqsd would not start."""
        parser = configparser.ConfigParser()
        parser.read(REPO / "setup.cfg")
        listed = {name.strip() for name in parser["options"]["packages"].split(",")}
        found = {
            ".".join(init.parent.relative_to(REPO).parts)
            for init in (REPO / "s3sqsd").rglob("__init__.py")
        }
        assert listed == found


def config_keys() -> list[str]:
    keys = []
    for item in fields(Config):
        if item.name == "retry":
            keys += [f"retry.{f.name}" for f in fields(RetryConfig)]
        elif item.name == "key_decoding":
            keys += [f"key_decoding.{f.name}" for f in fields(KeyDecodingPolicy)]
        elif item.name == "large_objects":
            keys += [f"large_objects.{f.name}" for f in fields(LargeObjectsConfig)]
        elif item.name == "aws":
            network = [f.name for f in fields(AwsConfig) if f.name not in ("role", "sqs_role")]
            role = [f.name for f in fields(RoleConfig)]
            keys += ["aws", "aws.sqs", *(f"aws.{name}" for name in (*role, *network))]
        else:
            keys.append(item.name)
    return keys


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_is_in_the_man_page(key: str) -> None:
    """s3sqsd.yaml(5) documents every key Config accepts (nested keys under their section)."""
    page = (MAN / "s3sqsd.yaml.5").read_text().replace("\\-", "-")
    name = key.rsplit(".", 1)[-1]
    assert re.search(rf"^\.BI? {re.escape(name)}:", page, re.M), f"{key} missing"


def test_man_pages_have_the_sections_operators_need() -> None:
    page = (MAN / "s3sqsd.8").read_text()
    for section in ("SYNOPSIS", "COMMANDS", "INSTANCES", "SIGNALS", '"EXIT STATUS"', "FILES"):
        assert re.search(rf"^\.SH {section}$", page, re.M), section
    words = ("check\\-config", "\\-\\-version", "\\-\\-instance", "s3sqsd@.service")
    for word in (*words, "metrics.listen", "SIGHUP", "SIGTERM", "78"):
        assert word in page, word
