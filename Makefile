# The two commands a newcomer needs:  `make demo` runs the tutorial,  `make test` runs the tests.
# Both install what they need first (Python venv from the lock, Azurite from package-lock.json).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dbt gets a venv of its own (dbt_venv in the image), so dbt's pins never meet Airflow's.
DBT_VENV := .venv-dbt
DBT_STAMP := $(DBT_VENV)/.installed
DBT_PROJECT := dbt/pokemon
DBT_MANIFEST := $(DBT_PROJECT)/target/manifest.json

# Airflow runs locally with SQLite in a project-local home, with dags/ and include/ importable
# exactly as in the Astro image (the project root is on sys.path, like /usr/local/airflow there).
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYTHONPATH := $(CURDIR)
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup test test-slow test-postgres test-browser test-celery astro-pytest image-deps demo airflow bench lint format lock clean

setup: $(STAMP) $(DBT_MANIFEST)

$(STAMP): requirements-dev.lock package-lock.json
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check "uv==$$(sed -n 's/^uv==//p' requirements-dev.lock)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements-dev.lock
	npm ci --silent --no-audit --no-fund
	@touch $(STAMP)

# Bytecode compiled once here: every dbt task of the Cosmos DAG starts a fresh dbt process.
$(DBT_STAMP): dbt-requirements.lock | $(STAMP)
	@test -x $(DBT_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(BIN)/python $(DBT_VENV)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(DBT_VENV)/bin/python dbt-requirements.lock
	@touch $(DBT_STAMP)

# Cosmos renders the dbt tasks from dbt's manifest: parse again whenever the project changes.
$(DBT_MANIFEST): $(DBT_STAMP) $(shell find $(DBT_PROJECT) \( -name '*.sql' -o -name '*.yml' \) -not -path '*/target/*')
	$(DBT_VENV)/bin/dbt parse --quiet --project-dir $(DBT_PROJECT) --profiles-dir $(DBT_PROJECT)

# The browser tests start an Airflow of their own and take minutes: a target (and CI step) of their own.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest --durations=15 --ignore=tests/e2e/test_browser.py -m "not celery and not slow"

# Every test marked slow: the tutorial matrix on SQLite, the catalogue at the production threshold on
# the four stores, the benchmark's smoke run (with the shaped link as root) and its common.io venv
# build: ~10 min on 2 cores, so CI runs them as a step of their own.
test-slow: setup
	$(BIN)/pytest --durations=10 -m slow

# Needs Debian's chromium (`apt-get install -y chromium`); skipped without it, except under CI=1.
test-browser: setup
	$(BIN)/pytest tests/e2e/test_browser.py

# The contract, end-to-end and fault suites and make airflow again, with PostgreSQL as Airflow's
# metadata database (tools/servers/postgres.py starts a server from the pinned wheel for the session;
# `make test` uses SQLite). The hostile catalogue runs here where the database holds the values: at
# the production threshold, on S3's JSON and pandas backends. A value under the threshold takes the
# same path into the database whatever the store, and at threshold 0 the row is a reference whatever
# the value; those and the other stores run on SQLite in `make test` and `make test-slow`.
POSTGRES_CATALOGUE = not catalogue or (threshold65536 and S3XComBackend)
test-postgres: setup
	XCOM_TEST_DB=postgres $(BIN)/pytest tests/stores/test_backend_contract.py tests/stores/test_faults.py \
		tests/e2e/test_e2e.py tests/e2e/test_airflow_local.py -k "$(POSTGRES_CATALOGUE)"

# `astro dev pytest` without Docker: the build context less .dockerignore, a venv of the image's Python
# with only Airflow + requirements.txt + pytest, .env.example as .env, CI unset (tools/astro_pytest.py).
astro-pytest: $(STAMP)
	$(BIN)/python -m tools.astro_pytest $(ASTRO_PYTEST_ARGS)

# Every pin the image installs claims the Dockerfile's Python on x86_64 and aarch64 (needs the index).
image-deps: $(STAMP)
	$(BIN)/python -m tools.image_deps $(IMAGE_DEPS_ARGS)

# The CeleryExecutor with two workers that share no disk (tests/e2e/test_celery.py): PostgreSQL, Redis,
# `make airflow`'s processes and two workers, ~6 min on 2 quiet cores, so not part of `make test`.
test-celery: setup
	$(BIN)/pytest -m celery tests/e2e/test_celery.py

demo: setup
	$(BIN)/python -m tools.demo $(DEMO_ARGS)

# A running Airflow (API server, scheduler, DAG processor, triggerer) on the local stores; Ctrl-C stops it.
airflow: setup
	$(BIN)/python -m tools.airflow_local $(AIRFLOW_ARGS)

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
	rm -rf $(VENV) $(DBT_VENV) $(DBT_PROJECT)/target $(DBT_PROJECT)/logs node_modules .venv-commonio-s3 .airflow .pytest_cache
