"""Which service a process is: the plain ``s3sqsd.service``, or instance NAME of the template
``s3sqsd@.service`` (several feeds on one host), and the paths that follow from it. Pure.

Instance NAME (``s3sqsd --instance NAME``, the template's ``ExecStart``) reads
``/etc/s3sqsd/NAME.yaml`` and, when that file sets no ``download_folder``, downloads into
``/var/lib/s3sqsd-NAME/downloads``: inside the template's ``StateDirectory=s3sqsd-%i``, the
one directory the instance's sandbox may write. The name is given on the command line, not
taken from systemd's ``$STATE_DIRECTORY``, so ``s3sqsd check --instance NAME`` and
``s3sqsd sync --instance NAME`` from an operator's shell use the same file and the same folder
as the running instance. tests/system/test_static.py keeps these paths and the unit in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from s3sqsd.config import DEFAULT_CONFIG_PATH, DEFAULT_DOWNLOAD_FOLDER, Config, load_config
from s3sqsd.errors import ConfigError

PLAIN_UNIT = "s3sqsd"
INSTANCE_CONFIG_FOLDER = DEFAULT_CONFIG_PATH.parent  # /etc/s3sqsd/NAME.yaml
STATE_ROOT = Path("/var/lib")  # /var/lib/s3sqsd-NAME: StateDirectory=s3sqsd-%i in the unit
# What systemd leaves unescaped in an instance name, and what is safe in a file name: no "/",
# no leading dot, no backslash escapes (systemd-escape's \x20 for a space and the like).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Service:
    """The configuration file, the folder when it names none, and the unit to name in hints."""

    config_path: Path
    default_download_folder: Path = DEFAULT_DOWNLOAD_FOLDER
    unit: str = PLAIN_UNIT
    instance: str | None = None

    def load(self) -> Config:
        return load_config(self.config_path, default_download_folder=self.default_download_folder)


def instance_service(name: str, *, config_path: Path | None = None) -> Service:
    """Instance ``name``'s service; ``config_path`` overrides its file. ConfigError if the name
    cannot be an instance's (it becomes part of a file name and a directory name)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--instance: {name!r} is not an instance name: 1 to 64 letters, digits, '_', '.' "
            "and '-', starting with a letter or digit (s3sqsd@NAME.service reads "
            "/etc/s3sqsd/NAME.yaml)"
        )
    return Service(
        config_path=config_path or INSTANCE_CONFIG_FOLDER / f"{name}.yaml",
        default_download_folder=STATE_ROOT / f"{PLAIN_UNIT}-{name}" / DEFAULT_DOWNLOAD_FOLDER.name,
        unit=f"{PLAIN_UNIT}@{name}",
        instance=name,
    )
