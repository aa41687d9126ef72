"""Shared fixtures: an isolated Airflow home, the local object stores, fresh buckets, a migrated DB,
and for every test the backends' default settings and fresh store clients.

Airflow reads its configuration when it is first imported, so the environment is set up at the
top of this module (and, for PostgreSQL, in pytest_configure), before any test module (or fixture)
can import airflow.

The metadata database is a dimension of the whole session: ``XCOM_TEST_DB=sqlite`` (the default,
the embedded database of `make demo`) or ``XCOM_TEST_DB=postgres`` (Astro's; a server from
tools/servers/postgres.py, started for the session; `make test-postgres`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# A fresh AIRFLOW_HOME per run: tests must not see (or write into) the developer's .airflow/ or
# a previous run's database. AIRFLOW__CORE__XCOM_BACKEND is left alone: tests set it themselves.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="xcom-tests-airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
TEST_DATABASES = ("sqlite", "postgres")
TEST_DB = os.environ.get("XCOM_TEST_DB", "").strip().lower() or "sqlite"
if TEST_DB not in TEST_DATABASES:
    raise SystemExit(f"XCOM_TEST_DB must be one of {', '.join(TEST_DATABASES)}; got {TEST_DB!r}")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
# dags/ and include/ import each other as in the Astro image, where the project root is on the path;
# subprocesses such as `airflow dags test` need it too.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
if str(REPO_ROOT) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)

import contextlib  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import pytest  # noqa: E402

from include.xcom_backend.registry import TABLE  # noqa: E402
from include.xcom_backend.settings import OPTIONS  # noqa: E402
from include.xcom_backend.stores.base import ObjectStore  # noqa: E402
from tests.support.schemes import server_of  # noqa: E402
from tools.servers import LocalServers, ServerStartError, unique_bucket_name  # noqa: E402
from tools.servers.postgres import SQL_ALCHEMY_CONN, PostgresServer  # noqa: E402

T = TypeVar("T")

# The session's PostgreSQL server when XCOM_TEST_DB=postgres; its first database is the one this
# process's Airflow uses, and the `airflow_db` fixture migrates it.
_postgres: PostgresServer | None = None
_TEMPLATE_DB = "airflow_template"


def pytest_configure(config: pytest.Config) -> None:
    global _postgres
    if TEST_DB != "postgres" or _postgres is not None:
        return
    server = PostgresServer(_AIRFLOW_HOME / "postgres")
    try:
        server.start()
    except ServerStartError as exc:
        # Asked for by name: a missing server is an error, never a silent fall-back to SQLite.
        raise pytest.UsageError(f"XCOM_TEST_DB=postgres, but {exc}") from None
    _postgres = server
    os.environ[SQL_ALCHEMY_CONN] = server.url()
    # Importing the backends' settings (above) imported Airflow, which set up its ORM on SQLite from
    # the environment of that moment: set it up again on this server.
    from airflow import settings

    settings.dispose_orm(do_log=False)
    settings.configure_vars()
    settings.configure_orm()
    _report(config, f"metadata DB: PostgreSQL {server.version()} at {server.url().split('@')[1]}")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _postgres
    if _postgres is not None:
        _postgres.stop()
        _postgres = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"metadata database: {TEST_DB} (XCOM_TEST_DB)"


def stores_required() -> bool:
    """In CI (or with XCOM_REQUIRE_STORES=1) missing stores fail the run instead of skipping tests."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("XCOM_REQUIRE_STORES") == "1"


_reported: set[str] = set()


def _report(config: pytest.Config, text: str) -> None:
    # Skip reasons are cut to one line in the summary; the full reason (log tail, install hint)
    # goes straight to the terminal, once.
    if text in _reported:
        return
    _reported.add(text)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is None:
            print(text, file=sys.stderr)
            return
        reporter.write_line("")
        for line in text.splitlines():
            reporter.write_line(line, yellow=True)


def start_or_skip(start: Callable[[], T], config: pytest.Config) -> T:
    """Run ``start``; on ``ServerStartError`` skip the test, or fail it where stores are required."""
    try:
        return start()
    except ServerStartError as exc:
        error = exc
    # Outside the except block, so the report is not cluttered with "during handling of ..." chains.
    if stores_required():
        pytest.fail(f"{error}\n(CI or XCOM_REQUIRE_STORES=1: stores are required)", pytrace=False)
    _report(config, f"Skipping store tests: {error}")
    pytest.skip(f"local object stores unavailable ({error.reason.splitlines()[0]}); run `make setup`")


_SETTING_VARS = [
    name
    for option in [*OPTIONS.values(), *(o for row in TABLE.values() for o in row.options.values())]
    for name in (option.env_var, option.legacy)
    if name
]


@pytest.fixture(autouse=True)
def reset_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Every test starts from the default [xcom_backend] settings and builds fresh store clients.

    The adapters cache one client per bucket and connection id; a test that changes what a
    connection says (its variable) in the middle calls the returned function to drop them."""
    for name in _SETTING_VARS:
        monkeypatch.delenv(name, raising=False)

    def reset() -> None:
        ObjectStore._instances.clear()

    reset()
    yield reset
    reset()


@pytest.fixture(scope="session")
def local_stores(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalServers]:
    """SeaweedFS (S3 and MinIO), Azurite and fake-gcs-server, started once for the whole session.

    Their connection variables (``LocalServers.env()``) are in ``os.environ`` while it is active and
    the default buckets exist. Tests that need isolation take a bucket from ``new_bucket``.
    """
    stores = LocalServers(tmp_path_factory.mktemp("local-stores"))
    start_or_skip(stores.start, request.config)
    try:
        stores.create_default_buckets()
        with stores.environment():
            yield stores
    finally:
        stores.stop()


@pytest.fixture(scope="session")
def seaweedfs(local_stores: LocalServers) -> Any:
    return local_stores.seaweedfs


@pytest.fixture(scope="session")
def azurite(local_stores: LocalServers) -> Any:
    return local_stores.azurite


@pytest.fixture(scope="session")
def fake_gcs(local_stores: LocalServers) -> Any:
    return local_stores.fake_gcs


@pytest.fixture
def bucket_name() -> str:
    """A fresh, valid, *not created* bucket/container name, e.g. for missing-bucket tests."""
    return unique_bucket_name()


@pytest.fixture
def new_bucket(local_stores: LocalServers) -> Iterator[Callable[..., str]]:
    """Factory: ``new_bucket(scheme)`` creates a fresh bucket (container) on the server of that store
    and returns its name; it is deleted with its contents after the test."""
    created: list[tuple[Any, str]] = []

    def make(scheme: str, prefix: str = "t") -> str:
        name = unique_bucket_name(prefix)
        server = server_of(local_stores, scheme)
        server.create_bucket(name)
        created.append((server, name))
        return name

    yield make
    for server, name in reversed(created):
        # The test may have deleted it already; the data dir goes away with the session anyway.
        with contextlib.suppress(Exception):
            server.delete_bucket_recursive(name)


@pytest.fixture
def use_new_bucket(
    new_bucket: Callable[..., str], monkeypatch: pytest.MonkeyPatch, reset_stores: Callable[[], None]
) -> Callable[[str], tuple[Any, str]]:
    """Factory: ``use_new_bucket(scheme)`` points the settings at a fresh bucket of that store and
    returns the store's public JSON backend class and the bucket."""
    from tests.support.schemes import bucket_var, json_backend
    from tests.support.xcom_calls import load

    def use(scheme: str) -> tuple[Any, str]:
        bucket = new_bucket(scheme)
        monkeypatch.setenv(bucket_var(scheme), bucket)
        reset_stores()
        return load(json_backend(scheme)), bucket

    return use


@pytest.fixture
def start_local_stores(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], LocalServers]]:
    """Factory for an extra, private set of servers (e.g. to test stopping them); stopped after the test."""
    started: list[LocalServers] = []

    def start() -> LocalServers:
        stores = LocalServers(tmp_path / f"stores-{len(started)}")
        start_or_skip(stores.start, request.config)
        started.append(stores)
        return stores

    yield start
    for stores in started:
        stores.stop()


@dataclass(frozen=True)
class AirflowDb:
    home: Path
    airflow: str
    migrate_seconds: float
    kind: str = "sqlite"
    """"sqlite" or "postgres": the session's XCOM_TEST_DB."""

    def copy_into(self, home: Path) -> Path:
        """A private metadata DB with the migrated schema for the Airflow home ``home``, so a module's
        runs and XCom rows are its own: a copy of the SQLite file, or a PostgreSQL database made from
        the migrated template and named in the home's airflow.cfg. Both are instant next to a migration."""
        home.mkdir(parents=True, exist_ok=True)
        if _postgres is None:
            shutil.copy2(self.home / "airflow.db", home / "airflow.db")
            return home
        name = _postgres.create_database(f"home_{uuid.uuid4().hex[:12]}", template=_TEMPLATE_DB)
        (home / "airflow.cfg").write_text(f"[database]\nsql_alchemy_conn = {_postgres.url(name)}\n")
        return home

    def new_database_env(self) -> dict[str, str]:
        """Variables pointing an Airflow process at a fresh migrated database of its own on PostgreSQL;
        none on SQLite, where each Airflow home has its own file."""
        if _postgres is None:
            return {}
        return _postgres.env(_postgres.create_database(f"env_{uuid.uuid4().hex[:12]}", template=_TEMPLATE_DB))

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the ``airflow`` CLI with this session's environment (stores' variables included)."""
        result = subprocess.run(
            [self.airflow, *args],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`airflow {' '.join(args)}` exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
            )
        return result


def _airflow_executable() -> str:
    beside_python = Path(sys.executable).parent / "airflow"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("airflow")
    if found is None:
        pytest.fail("the `airflow` command is neither beside this Python nor on PATH; run `make setup`")
    return found


@pytest.fixture(scope="session")
def airflow_db(request: pytest.FixtureRequest) -> AirflowDb:
    """``airflow db migrate`` on the session's isolated database, run only when requested.

    On PostgreSQL a copy of the migrated database is kept as a template that nobody connects to,
    for ``copy_into``: PostgreSQL copies only a database without sessions.
    """
    airflow = _airflow_executable()
    began = time.monotonic()
    result = subprocess.run(
        [airflow, "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.monotonic() - began
    if result.returncode != 0:
        pytest.fail(
            f"`airflow db migrate` failed ({result.returncode}) in {_AIRFLOW_HOME}:\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    if _postgres is not None:
        _postgres.create_database(_TEMPLATE_DB, template=_postgres.database)
    _report(request.config, f"airflow db migrate ({TEST_DB}): {elapsed:.1f} s")
    return AirflowDb(home=_AIRFLOW_HOME, airflow=airflow, migrate_seconds=elapsed, kind=TEST_DB)


@pytest.fixture(scope="session")
def xcom_table(airflow_db: AirflowDb) -> AirflowDb:
    """The session's migrated metadata DB, ready for tests.support.xcom_calls to write XCom rows to it."""
    from tests.support import xcom_calls

    xcom_calls.bind_database()
    return airflow_db
