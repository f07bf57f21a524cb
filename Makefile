# Entry points. The first two are the README's fresh-machine commands.
#   make demo          the real daemon end to end against the local emulator
#   make test          unit, functional and integration tests (current PyPI dependencies)
#   make test-bookworm the same suite on Debian bookworm's dependency versions
#   make test-localstack the end-to-end suite against LocalStack, a second S3/SQS implementation
#                      (LocalStack runs on Python 3.13: LOCALSTACK_PYTHON=/path/to/python3.13)
#   make lint          ruff (lint + format check) and mypy --strict
#   make deb           dist/s3sqsd_<version>_all.deb (build deps: sudo packaging/build-deps.sh)
#   make system-test   root: builds the .deb, boots Debian with systemd, installs it with apt
#   make bench         the benchmark against the original script and the boto3 limit (~20 min;
#                      BENCH_ARGS=--quick for a 2-3 minute smoke run); docs/performance.md
#   make bench-sync    s3sqsd sync against aws s3 sync and rclone copy (~8 minutes;
#                      BENCH_SYNC_ARGS=--quick for a one-minute smoke run); needs rclone
#                      (apt-get install rclone) and builds .venv-bench for the AWS CLI
#   make chaos         the full chaos run by hand (docs/reliability.md)
# Virtualenvs live in .venv (requirements/dev.txt), .venv-bookworm (requirements/bookworm.txt)
# and .venv-localstack (requirements/localstack.txt, Python 3.13); the sync benchmark's AWS CLI
# in .venv-bench (requirements/bench.txt), never in s3sqsd's own dependencies.

PYTHON ?= python3
VENV ?= .venv
VENV_BOOKWORM ?= .venv-bookworm
VENV_LOCALSTACK ?= .venv-localstack
VENV_BENCH ?= .venv-bench
PYTEST_ARGS ?=
# Test processes (pytest-xdist; 0: one process). The suite mostly waits on real daemons and
# servers, so more workers than cores pay: 6 on this 2-core machine (docs in the README).
PYTEST_WORKERS ?= 6
XDIST = -n $(PYTEST_WORKERS) --dist worksteal
# LocalStack's interpreter: the newest pyenv 3.13.x, else python3.13 on PATH, each only if it
# really runs 3.13 (pyenv's python3.13 shim is on PATH even when pyenv's active version is not).
LOCALSTACK_PYTHON ?= $(shell for p in $$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.13.*/bin/python3.13 2>/dev/null | sort -rV) $$(command -v python3.13); do "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo "$$p"; break; }; done)

.PHONY: demo test test-bookworm test-localstack lint deb system-test bench bench-venv bench-sync chaos clean
BENCH_ARGS ?= --repeat a=3,b=2,c=2,d=1,e=1
BENCH_SYNC_ARGS ?=

$(VENV)/.installed: requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements/dev.txt
	touch $@

$(VENV_BOOKWORM)/.installed: requirements/bookworm.txt
	$(PYTHON) -m venv $(VENV_BOOKWORM)
	$(VENV_BOOKWORM)/bin/pip install --disable-pip-version-check -q -r requirements/bookworm.txt
	touch $@

$(VENV_LOCALSTACK)/.installed: requirements/localstack.txt
	@test -n "$(LOCALSTACK_PYTHON)" || { echo "no Python 3.13 for LocalStack (pyenv 3.13.x or python3.13 on PATH); set LOCALSTACK_PYTHON=/path/to/python3.13" >&2; exit 1; }
	$(LOCALSTACK_PYTHON) -m venv $(VENV_LOCALSTACK)
	$(VENV_LOCALSTACK)/bin/pip install --disable-pip-version-check -q -r requirements/localstack.txt
	touch $@

$(VENV_BENCH)/.installed: requirements/bench.txt
	$(PYTHON) -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/pip install --disable-pip-version-check -q -r requirements/bench.txt
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python -m tools.demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not system and not localstack" $(XDIST) $(PYTEST_ARGS)

test-bookworm: $(VENV_BOOKWORM)/.installed
	$(VENV_BOOKWORM)/bin/python -m pytest -m "not system and not localstack" $(XDIST) $(PYTEST_ARGS)

# Always sets S3SQSD_LOCALSTACK_PYTHON: the tests skip only when it is unset, never here.
test-localstack: $(VENV)/.installed $(VENV_LOCALSTACK)/.installed
	S3SQSD_LOCALSTACK_PYTHON="$(CURDIR)/$(VENV_LOCALSTACK)/bin/python" \
		$(VENV)/bin/python -m pytest -m localstack tests/localstack -n 2 --dist worksteal $(PYTEST_ARGS)

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
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-venv: $(VENV_BENCH)/.installed

bench-sync: $(VENV)/.installed $(VENV_BENCH)/.installed
	@command -v rclone >/dev/null || echo "rclone is not installed (apt-get install rclone): the benchmark skips it" >&2
	$(VENV)/bin/python -m bench.sync --aws $(VENV_BENCH)/bin/aws $(BENCH_SYNC_ARGS)

chaos: $(VENV)/.installed
	$(VENV)/bin/python -m bench.chaos --profile full

clean:
	rm -rf $(VENV) $(VENV_BOOKWORM) $(VENV_LOCALSTACK) $(VENV_BENCH) dist build demo-run .pytest_cache .mypy_cache .ruff_cache
