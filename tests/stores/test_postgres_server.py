"""tools/servers/postgres.py: a PostgreSQL server the project starts itself, and stops without leftovers."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import start_or_skip
from tools.servers.postgres import PostgresServer


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest):
    started = PostgresServer(tmp_path / "pg", startup_timeout=120)
    start_or_skip(started.start, request.config)
    yield started
    started.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_serves_a_password_protected_database_and_stops_without_leftovers(server):
    import psycopg

    assert server.is_running() and _accepts(server.port)
    with server.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_user")
        assert cursor.fetchone() == ("airflow", "airflow")
        # The behaviour the metadata-DB tests are here for: JSONB does not keep JSON as written.
        cursor.execute("""SELECT '{"zebra": 1, "a": -0.0, "b": 1e16}'::jsonb::text""")
        assert cursor.fetchone()[0] == '{"a": 0.0, "b": 10000000000000000, "zebra": 1}'
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            host="127.0.0.1", port=server.port, user="airflow", password="wrong", dbname="postgres"
        )
    assert "database system is ready to accept connections" in server.log_text()

    copy = server.create_database("copy", template="airflow")
    assert server.url(copy).endswith(f":{server.port}/copy")

    pid, port, private = server.pid, server.port, server._private_dir
    # As root, the cluster lives where the server's unprivileged user can reach it.
    assert (private is not None) == (os.geteuid() == 0)
    server.stop()
    assert not server.is_running() and not _accepts(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert private is None or not private.exists()
    server.stop()  # twice is harmless
