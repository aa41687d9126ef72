"""A throw-away PostgreSQL server for the Celery cluster: metadata DB and Celery result backend.

Celery workers on different machines write task results to the result backend, so it cannot be a
SQLite file on one machine's disk; Airflow's metadata DB on Astro is PostgreSQL too. This module is
deliberately small: the project's general PostgreSQL server (tools/postgres.py, issue 11) replaces it
once merged, and only ``CeleryCluster`` imports it.

Binaries: Debian's ``postgresql`` (``/usr/lib/postgresql/<N>/bin``) or whatever ``pg_config --bindir``
names. PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user
(created by the Debian package) through ``setpriv``, with its data directory in a fresh directory
only that user can read.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import ClassVar

from tools.local_stores import HOST, LocalServer, StoreNotInstalledError, StoreStartError

INSTALL_HINT = "Install PostgreSQL with `apt-get install postgresql` (Debian's server binaries)."
DATABASE = "airflow"
USER = "airflow"


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: the newest Debian version, else pg_config's."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise StoreNotInstalledError(
        "PostgreSQL", f"no initdb/postgres under /usr/lib/postgresql or pg_config. {INSTALL_HINT}"
    )


class PostgresServer(LocalServer):
    """``postgres`` on 127.0.0.1 only (no Unix socket), one database, password auth."""

    name: ClassVar[str] = "PostgreSQL"

    def __init__(self, data_dir: Path | str, *, startup_timeout: float = 60.0) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.password = secrets.token_hex(16)
        self._pgdata: Path | None = None
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None
        self._created_db = False

    def url(self, driver: str = "psycopg2") -> str:
        """SQLAlchemy URL of the database, e.g. ``postgresql+psycopg2://airflow:...@127.0.0.1:P/airflow``."""
        return f"postgresql+{driver}://{USER}:{self.password}@{HOST}:{self.port}/{DATABASE}"

    def _as_user(self, command: list[str]) -> list[str]:
        if not self._run_as:
            return command
        # setpriv execs in place (runuser would stay as a parent and kill the server on SIGTERM).
        return [
            "setpriv",
            f"--reuid={self._run_as}",
            f"--regid={self._run_as}",
            "--init-groups",
            "--",
            *command,
        ]

    def _prepare(self) -> None:
        if self._pgdata is not None:
            return
        bindir = find_postgres_bindir()
        if self._run_as:
            try:
                owner = pwd.getpwnam(self._run_as)
            except KeyError:
                raise StoreNotInstalledError(
                    self.name, f"running as root needs the `{self._run_as}` user. {INSTALL_HINT}"
                ) from None
            # Outside data_dir: a test's tmp dir is private to root, and the server's user must reach it.
            pgdata = Path(tempfile.mkdtemp(prefix="celery-pg-"))
            os.chown(pgdata, owner.pw_uid, owner.pw_gid)
        else:
            pgdata = self.data_dir / "pgdata"
            pgdata.mkdir(mode=0o700)
        self._pgdata = pgdata
        pwfile = pgdata / "pw"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        command = [str(bindir / "initdb"), "-D", str(pgdata / "db"), "-U", USER, "--pwfile", str(pwfile)]
        command += ["--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        result = subprocess.run(
            self._as_user(command), capture_output=True, text=True, timeout=120, cwd=pgdata, check=False
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise StoreStartError(
                self.name, f"initdb failed ({result.returncode})", result.stdout + result.stderr
            )
        self._bindir = bindir

    def _command(self) -> list[str]:
        assert self._pgdata is not None
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": "",
            # A test database: losing it in a crash costs nothing, and fsync costs seconds per run.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        command = [str(self._bindir / "postgres"), "-D", str(self._pgdata / "db")]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return self._as_user(command)

    def _env_drop(self) -> tuple[str, ...]:
        return tuple(k for k in os.environ if k.startswith("PG"))

    def _probe(self) -> None:
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(
                host=HOST,
                port=self.port,
                user=USER,
                password=self.password,
                dbname="postgres",
                connect_timeout=2,
            )
        ) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                if not self._created_db:
                    cur.execute(f"CREATE DATABASE {DATABASE}")
                    self._created_db = True
                cur.execute("SELECT 1")

    def stop(self, timeout: float = 15.0) -> None:
        # SIGINT is PostgreSQL's fast shutdown. The group-wide SIGTERM of LocalServer is its smart
        # shutdown, which waits for every client to disconnect; backends run in sessions of their
        # own, so the group signal does not reach them either.
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        super().stop(timeout)

    def _after_stop(self) -> None:
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)
            self._pgdata = None
            self._created_db = False
