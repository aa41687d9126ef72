"""`make airflow` starts, serves the UI, runs both tutorial DAGs when triggered, and stops cleanly.

On the session's metadata database kind: SQLite under `make test`, `make airflow --postgres` (a server
of its own) under `make test-postgres` (XCOM_TEST_DB=postgres).
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from include.xcom_backend.reference import ROW_KEY
from tests.conftest import TEST_DB
from tests.support.airflow_process import (
    kill,
    spawn_airflow,
    start_airflow,
    stop_airflow,
    survivors,
    wait_for_dag,
    wait_for_run,
)
from tools.airflow_settings import DEFAULT_FILE, load

pytestmark = [pytest.mark.stores, pytest.mark.slow]

TUTORIAL_DAGS = ("simple_xcom_dag", "fetch_pokemon_data_dag")


def test_make_airflow_runs_the_tutorial_dags_and_stops_cleanly(local_stores, tmp_path) -> None:
    # `local_stores` is here for its skip: where the servers cannot start, neither can make airflow.
    run = start_airflow(tmp_path / "home", *(["--postgres"] if TEST_DB == "postgres" else []))
    try:
        assert (TEST_DB == "postgres") == any(line.startswith("PostgreSQL ") for line in run.lines), (
            run.output
        )
        page = httpx.get(run.url, timeout=30)
        assert page.status_code == 200 and "<title>Airflow" in page.text, page.text[:500]

        with run.client() as client:
            # The connections of airflow_settings.yaml, as the API server now serves them.
            for conn in load(DEFAULT_FILE).connections:
                served = client.get(f"/api/v2/connections/{conn.conn_id}").json()
                assert (served["conn_type"], served["host"]) == (conn.conn_type, conn.host)

            run_ids = {}
            for dag_id in TUTORIAL_DAGS:
                assert wait_for_dag(client, dag_id)["is_paused"], "a new DAG starts paused, as under Astro"
                client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
                answer = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
                answer.raise_for_status()
                run_ids[dag_id] = answer.json()["dag_run_id"]
            for dag_id, run_id in run_ids.items():
                assert wait_for_run(client, dag_id, run_id) == "success", run.output[-4000:]
                entries = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/~/xcomEntries")
                values = [
                    client.get(
                        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{e['task_id']}/xcomEntries/{e['key']}",
                        params={"deserialize": False},
                    ).json()["value"]
                    for e in entries.json()["xcom_entries"]
                ]
                # The default backend (MinIO API, pandas) keeps rows naming its objects in the database.
                assert values and all(
                    v[ROW_KEY].startswith("xcom_minio://custom-xcom-backend/") for v in values
                ), values

        pids = survivors(run.marker)
        assert len(pids) >= 8, f"expected the stores and Airflow's processes, found {pids}"
        assert stop_airflow(run) == 0, run.output[-4000:]
        assert run.output.splitlines()[-1] == "Stopped."
        assert survivors(run.marker) == [], "processes outlived make airflow"
    finally:
        if run.process.poll() is None or survivors(run.marker):
            kill(run)


def test_sigterm_during_start_up_leaves_nothing_running(local_stores, tmp_path) -> None:
    run = spawn_airflow(tmp_path / "home")
    try:
        # Stopped while the stores run and the database migrates: children of both kinds exist.
        deadline = time.monotonic() + 120
        while len(survivors(run.marker)) < 8:  # the tool, 3 stores, 3 watchdogs, `db migrate`
            assert run.process.poll() is None and time.monotonic() < deadline, run.output
            time.sleep(0.2)
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(120) == 0, run.output
        assert survivors(run.marker) == [], "processes outlived make airflow"
    finally:
        if run.process.poll() is None or survivors(run.marker):
            kill(run)
