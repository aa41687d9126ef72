# The two commands a newcomer needs:  `make demo` runs the tutorial,  `make test` runs the tests.
# Both install what they need first (Python venv from the lock, Azurite from package-lock.json).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Airflow runs locally with SQLite in a project-local home, with dags/ and include/ importable
# exactly as in the Astro image (the project root is on sys.path, like /usr/local/airflow there).
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYTHONPATH := $(CURDIR)
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup test demo bench lint format lock clean

setup: $(STAMP)

$(STAMP): requirements-dev.lock package-lock.json
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check "uv==$$(sed -n 's/^uv==//p' requirements-dev.lock)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements-dev.lock
	npm ci --silent --no-audit --no-fund
	@touch $(STAMP)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

demo: setup
	$(BIN)/python -m tools.demo $(DEMO_ARGS)

bench: setup
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin after editing requirements.txt or requirements-dev.in.
lock:
	$(BIN)/uv pip compile requirements-dev.in -o requirements-dev.lock --python-version 3.11 --quiet
	npm install --package-lock-only --no-audit --no-fund

clean:
	rm -rf $(VENV) node_modules .airflow .pytest_cache
