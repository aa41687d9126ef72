"""`make airflow`'s SQLite file: WAL mode and a busy timeout, so five processes can share it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from tools.airflow_local import SQLITE_BUSY_TIMEOUT_S, sqlite_url


def test_the_file_is_in_wal_mode_and_the_url_carries_the_busy_timeout(tmp_path: Path) -> None:
    from airflow.settings import _is_sqlite_db_path_relative

    url = sqlite_url(tmp_path / "airflow.db")
    assert not _is_sqlite_db_path_relative(url), "Airflow refuses a relative SQLite path"
    engine = create_engine(url)
    assert engine.dialect.create_connect_args(engine.url)[1]["timeout"] == SQLITE_BUSY_TIMEOUT_S
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()
