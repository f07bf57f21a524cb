# Entry points. The first two are the README's fresh-machine commands.
#   make demo          the real daemon end to end against the local emulator
#   make test          unit, functional and integration tests (current PyPI dependencies)
#   make test-bookworm the same suite on Debian bookworm's dependency versions
#   make lint          ruff (lint + format check) and mypy --strict
#   make deb           dist/s3sqsd_<version>_all.deb (build deps: sudo packaging/build-deps.sh)
#   make system-test   root: builds the .deb, boots Debian with systemd, installs it with apt
# Virtualenvs live in .venv (requirements/dev.txt) and .venv-bookworm (requirements/bookworm.txt).

PYTHON ?= python3
VENV ?= .venv
VENV_BOOKWORM ?= .venv-bookworm
PYTEST_ARGS ?=

.PHONY: demo test test-bookworm lint deb system-test clean

$(VENV)/.installed: requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements/dev.txt
	touch $@

$(VENV_BOOKWORM)/.installed: requirements/bookworm.txt
	$(PYTHON) -m venv $(VENV_BOOKWORM)
	$(VENV_BOOKWORM)/bin/pip install --disable-pip-version-check -q -r requirements/bookworm.txt
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python tools/demo.py

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not system" $(PYTEST_ARGS)

test-bookworm: $(VENV_BOOKWORM)/.installed
	$(VENV_BOOKWORM)/bin/python -m pytest -m "not system" $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

deb:
	packaging/build-deb.sh

system-test: $(VENV)/.installed
	packaging/build-deps.sh
	$(VENV)/bin/python -m pytest -m system tests/system $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(VENV_BOOKWORM) dist build demo-run .pytest_cache .mypy_cache .ruff_cache
