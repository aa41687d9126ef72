"""`make airflow`: a running Airflow on the local object stores, without Docker, until Ctrl-C.

Starts SeaweedFS, Azurite and fake-gcs-server (tools/servers/), migrates a fresh metadata
database (SQLite in the home by default; `--postgres` for a PostgreSQL server of its own from
tools/servers/postgres.py, or `--sql-alchemy-conn URL` for one you run), then runs the four
processes of `astro dev start` — API server, scheduler, DAG processor, triggerer — with the
LocalExecutor, the chosen XCom backend and one home under `.airflow/local/`. When the API server
reports all of them healthy it applies `airflow_settings.yaml` through the REST API, as the Astro CLI
does (tools/airflow_settings.py), and prints the UI's address. The UI needs no login
(`simple_auth_manager_all_admins`, as under `astro dev start`).

The connections the DAGs use come from environment variables that point at the local stores (and at
the PokeAPI stand-in when the internet is out of reach); Airflow reads those before the database, so
the yaml's entries, written for the compose network, stay visible in the UI but are not used.

The stores' connection variables are in `.airflow/local/stores.json`, to look into the buckets
with the same settings. Each process runs in a process group of its own and logs to
`.airflow/local/logs/<name>.log`. Ctrl-C or SIGTERM stops them all (SIGTERM to each group, SIGKILL
after `--stop-timeout`), then the stores; a process that dies on its own stops the rest and the
exit status is 1.

    make airflow
    make airflow AIRFLOW_ARGS="--backend include.s3_xcom_backend_json.S3XComBackendJSON --port 8080"
    make airflow AIRFLOW_ARGS=--postgres
    make airflow AIRFLOW_ARGS="--sql-alchemy-conn postgresql://user:pw@127.0.0.1:5432/airflow"
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import httpx

from tools.airflow_settings import DEFAULT_FILE, ApplyError, api_client, apply, load
from tools.dagrun import PROJECT_ROOT, airflow_env, migrate_db

DEFAULT_BACKEND = "include.minio_xcom_backend_pandas.MinIOXComBackendPandas"
DEFAULT_HOME = PROJECT_ROOT / ".airflow" / "local"
# The processes of an Airflow 3 deployment, by the name the health endpoint reports them under.
COMPONENTS = {
    "api-server": "metadatabase",
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}
_PR_SET_PDEATHSIG = 1
_HOME_STAMP = ".make-airflow-home"


# Five processes write to one SQLite file here (API server, scheduler, DAG processor, triggerer, task
# processes). With SQLite's defaults a writer waits 5 s for the lock and readers block writers, so on a
# busy machine the API answers 500 "database is locked". WAL lets readers and one writer proceed
# together, and the longer busy timeout lets a writer wait its turn instead of failing.
SQLITE_BUSY_TIMEOUT_S = 60


def sqlite_url(path: Path) -> str:
    """The metadata DB URL of a local SQLite file, created in WAL mode if it does not exist yet."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return f"sqlite:///{path}?timeout={SQLITE_BUSY_TIMEOUT_S}"


class AirflowStartError(RuntimeError):
    """A process exited or Airflow was not healthy in time; names the process and its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: if this tool is killed outright (no chance to stop anything),
    # the kernel sends the child SIGTERM instead of leaving it running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class LocalAirflow:
    """The stores and Airflow's four processes; `start()` returns when all are healthy."""

    home: Path = DEFAULT_HOME
    backend: str = DEFAULT_BACKEND
    port: int | None = None
    sql_alchemy_conn: str | None = None
    postgres: bool = False
    """Start a PostgreSQL server in the home for the metadata database (tools/servers/postgres.py)."""
    settings_file: Path = DEFAULT_FILE
    pokeapi_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 300.0
    stop_timeout: float = 30.0
    processes: list[Process] = field(default_factory=list)
    settings_applied: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.port = self.port or free_port()
        self.stores = None
        self.postgres_server = None
        self.env: dict[str, str] = {}
        if self.postgres and self.sql_alchemy_conn:
            raise ValueError("give --postgres or --sql-alchemy-conn, not both")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Callable[[str], None] = print) -> Self:
        from tools.servers import LocalServers

        # A fresh home each time: the stores start empty, so older runs' references would dangle.
        # Only a home this tool made is emptied; any other non-empty directory is refused.
        stamp = self.home / _HOME_STAMP
        if self.home.exists() and any(self.home.iterdir()) and not stamp.exists():
            raise ValueError(
                f"{self.home} is not empty and was not made by make airflow; choose another --home"
            )
        shutil.rmtree(self.home, ignore_errors=True)
        (self.home / "logs").mkdir(parents=True)
        stamp.write_text("made by tools/airflow_local.py, emptied at each start\n")
        settings = load(self.settings_file)
        self.stores = LocalServers(self.home / "stores")
        self.stores.start()
        self.stores.create_default_buckets()
        log(f"Local stores up in {self.stores.startup_seconds:.1f} s")
        # For whoever wants to look into the buckets while Airflow runs (the browser tests do).
        (self.home / "stores.json").write_text(json.dumps(self.stores.env(), indent=2))
        database = self.sql_alchemy_conn or sqlite_url(self.home / "airflow.db")
        if self.postgres:
            from tools.servers.postgres import PostgresServer

            self.postgres_server = PostgresServer(self.home / "postgres").start()
            database = self.postgres_server.url()
            log(f"PostgreSQL {self.postgres_server.version()} up on port {self.postgres_server.port}")
        connections = (
            {"pokeapi_default": {"conn_type": "http", "host": self.pokeapi_url}} if self.pokeapi_url else {}
        )
        secret = secrets.token_urlsafe(64)
        self.env = airflow_env(
            self.home,
            xcom_backend=self.backend,
            connections=connections,
            extra={
                **self.stores.env(),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # Task processes report to the Execution API of this API server, with tokens that
                # every process must sign and check with the same secret.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": secret,
                "AIRFLOW__API__SECRET_KEY": secret,
                "AIRFLOW__API__WORKERS": "1",
                **self.extra_env,
            },
        )
        started = time.monotonic()
        migrate_db(self.env)
        log(f"Metadata database migrated in {time.monotonic() - started:.1f} s")
        for name in COMPONENTS:
            args = ("--host", "127.0.0.1", "--port", str(self.port)) if name == "api-server" else ()
            self._spawn(name, (sys.executable, "-m", "airflow", name, *args))
        self._wait_healthy()
        log(f"Airflow healthy {time.monotonic() - started:.1f} s after the migration began")
        with api_client(self.url) as client:
            self.settings_applied = apply(client, settings)
        return self

    def _spawn(self, name: str, command: tuple[str, ...]) -> None:
        log_path = self.home / "logs" / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.processes.append(Process(name, popen, log_path, log))

    def dead(self) -> list[Process]:
        return [p for p in self.processes if p.popen.poll() is not None]

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health: dict = {}
        while time.monotonic() < deadline:
            if dead := self.dead():
                first = dead[0]
                raise AirflowStartError(
                    f"airflow {first.name} exited with code {first.popen.returncode} during start-up; "
                    f"log {first.log_path}:\n{first.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                if all(health.get(part, {}).get("status") == "healthy" for part in COMPONENTS.values()):
                    return
            time.sleep(1)
        raise AirflowStartError(
            f"Airflow not healthy after {self.startup_timeout:.0f} s; logs in {self.home / 'logs'}; "
            f"last health answer: {json.dumps(health)}"
        )

    def stop(self) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after `stop_timeout`; then the stores."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(max(0.1, deadline - time.monotonic()))
        # The group, not just the leader: the scheduler's task processes and the API server's
        # workers must not outlive it.
        for process in self.processes:
            if process.popen.poll() is None:
                print(
                    f"airflow {process.name} still running after {self.stop_timeout:.0f} s: killed",
                    flush=True,
                )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait()
            process.log.close()
        self.processes.clear()
        if self.stores is not None:
            self.stores.stop()
            self.stores = None
        if self.postgres_server is not None:
            self.postgres_server.stop()
            self.postgres_server = None


@contextlib.contextmanager
def _signals_raise_interrupt() -> Iterator[None]:
    # SIGTERM as Ctrl-C; SIGINT installed explicitly, as a shell starting this in the background
    # hands it SIGINT ignored.
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make airflow", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", default=DEFAULT_BACKEND, help="AIRFLOW__CORE__XCOM_BACKEND (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, help="API server and UI port (default: a free one)")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="Airflow home, emptied at start")
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--postgres", action="store_true", help="a PostgreSQL server of its own in the home"
    )
    database.add_argument("--sql-alchemy-conn", help="metadata database URL (default: SQLite in the home)")
    parser.add_argument("--settings", type=Path, default=DEFAULT_FILE, help="airflow_settings.yaml to apply")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="PokeAPI from a local stand-in (recorded data)")
    mode.add_argument("--online", action="store_true", help="the real PokeAPI, even if it is unreachable")
    parser.add_argument("--stop-timeout", type=float, default=30.0, help="seconds before SIGKILL at stop")
    args = parser.parse_args(argv)
    # The storage SDKs log every request at INFO once Airflow has configured logging.
    logging.getLogger("azure").setLevel(logging.WARNING)

    from tools.demo import pokeapi_problem
    from tools.pokeapi_standin import PokeApiStandin
    from tools.servers import ServerStartError

    airflow = LocalAirflow(
        home=args.home,
        backend=args.backend,
        port=args.port,
        sql_alchemy_conn=args.sql_alchemy_conn,
        postgres=args.postgres,
        settings_file=args.settings,
        stop_timeout=args.stop_timeout,
    )
    status = 0
    with _signals_raise_interrupt(), contextlib.ExitStack() as cleanup:
        try:
            offline = args.offline or (not args.online and (problem := pokeapi_problem()) is not None)
            if offline:
                if not args.offline:
                    print(f"PokeAPI is unreachable ({problem}): using the local stand-in (recorded data).")
                airflow.pokeapi_url = cleanup.enter_context(PokeApiStandin()).base_url
            cleanup.callback(airflow.stop)
            airflow.start()
            print("\n".join(airflow.settings_applied))
            print(f"XCom backend: {airflow.backend}")
            print(f"Logs: {airflow.home / 'logs'}")
            print(f"Airflow UI: {airflow.url}", flush=True)
            print("Ctrl-C stops everything.", flush=True)
            while not (dead := airflow.dead()):
                time.sleep(1)
            status = 1
            for process in dead:
                print(
                    f"airflow {process.name} exited with code {process.popen.returncode}; stopping",
                    file=sys.stderr,
                )
                print(process.tail(), file=sys.stderr)
        except KeyboardInterrupt:
            print("Stopping ...", flush=True)
        except (AirflowStartError, ApplyError, ServerStartError, ValueError, OSError, httpx.HTTPError) as exc:
            print(exc, file=sys.stderr)
            status = 1
        finally:
            # A second Ctrl-C must not cut the bounded stop short and leave processes behind.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
    print("Stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
