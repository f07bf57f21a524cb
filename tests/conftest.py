"""Shared fixtures: one emulator per test session, started on 127.0.0.1 with port 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.emulator import Emulator


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator()
    try:
        yield emu
    finally:
        emu.stop()
