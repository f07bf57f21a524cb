"""One LocalStack server per test session, for the suite in this folder.

The tests here are the end-to-end flows run against a second S3/SQS implementation, so that a
behaviour s3sqsd only gets right because moto gets it wrong (or the other way round) shows up.
They reuse tests/conftest.py's fixtures: ``emulator`` is overridden below to be the LocalStack
server, so ``make_config`` builds configs pointing at LocalStack and ``spawn_daemon``,
``download_folder`` and ``notify_socket`` work unchanged.

Without ``$S3SQSD_LOCALSTACK_PYTHON`` (a plain ``pytest`` on a machine without LocalStack) the
tests are skipped with that reason. ``make test-localstack`` always sets it, so there, and in
CI, they run or fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.localstack import PYTHON_ENV, LocalStack, localstack_python, running_localstack


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    python = localstack_python()
    if python is None:
        pytest.skip(f"${PYTHON_ENV} is not set; `make test-localstack` sets it and runs these")
    with running_localstack(python=python) as server:
        yield server


@pytest.fixture(scope="session")
def emulator(localstack: LocalStack) -> LocalStack:
    """tests/conftest.py's ``make_config`` (and anything else asking for ``emulator``) gets
    LocalStack in this folder."""
    return localstack
