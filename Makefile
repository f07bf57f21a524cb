# Entry points. The first two are the README's fresh-machine commands.
#   make demo          the real daemon end to end against the local emulator
#   make test          unit, functional and integration tests (current PyPI dependencies)
#   make test-bookworm the same suite on Debian bookworm's dependency versions
#   make lint          ruff (lint + format check) and mypy --strict
#   make deb           dist/s3sqsd_<version>_all.deb (build deps: sudo packaging/build-deps.sh)
#   make system-test   root: builds the .deb, boots Debian with systemd, installs it with apt
#   make bench         the benchmark against the original script and the boto3 limit (~20 min;
#                      BENCH_ARGS=--quick for a 2-3 minute smoke run); docs/performance.md
#   make chaos         the full chaos run by hand (docs/reliability.md)
# Virtualenvs live in .venv (requirements/dev.txt) and .venv-bookworm (requirements/bookworm.txt).

PYTHON ?= python3
VENV ?= .venv
VENV_BOOKWORM ?= .venv-bookworm
PYTEST_ARGS ?=

.PHONY: demo test test-bookworm lint deb system-test bench chaos clean
BENCH_ARGS ?= --repeat a=3,b=2,c=2,d=1,e=1

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

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

chaos: $(VENV)/.installed
	$(VENV)/bin/python bench/chaos.py --profile full

clean:
	rm -rf $(VENV) $(VENV_BOOKWORM) dist build demo-run .pytest_cache .mypy_cache .ruff_cache
