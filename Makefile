# Development tasks. `make test` needs no database setup: without DATABASE_URL it runs the suite against an
# embedded PostgreSQL 18 in a temporary directory (see service/pgserver/); with DATABASE_URL it uses that.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
PYTEST_ARGS ?=

.PHONY: .venv lint test test-fast test-plugin-user serve bench clean distclean

# The venv is (re)installed when pyproject.toml changes; otherwise this is a no-op.
.venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test,dev]'
	@touch $@

lint: .venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: .venv lint
	$(BIN)/python -m ledgerd.service.pgserver run -- $(BIN)/python -m pytest -q $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ]; then $(MAKE) --no-print-directory test-plugin-user; fi

# The sample user suite (tests/plugin_user): only the pytest plugin's fixtures, in parallel, as a user runs it.
test-plugin-user: .venv
	env -u DATABASE_URL -u LEDGER_URL $(BIN)/python -m pytest -c tests/plugin_user/pytest.ini -n 2 tests/plugin_user

# The edit-run loop (about a minute on 2 cores): the unit tests and the integration tests not marked
# `slow`, no lint. `make test` stays the whole suite.
test-fast: .venv
	$(BIN)/python -m ledgerd.service.pgserver run -- $(BIN)/python -m pytest -q -m "not slow" tests/unit tests/integration $(PYTEST_ARGS)

serve: .venv
	$(BIN)/ledgerd dev

# The bench extra (eventsourcing, psycopg, psutil, py-spy) is installed here, never by bench/run.py; wrk comes
# from Debian (`apt-get install wrk`), and the run stops at once, naming that command, if it is missing.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test,dev,bench]'
	@touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .pgtest
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Also removes the venv. The dev database in .ledger/ is never removed by make.
distclean: clean
	rm -rf $(VENV)
