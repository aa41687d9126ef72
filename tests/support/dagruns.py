"""Running the test DAGs of tests/dags_for_tests/ with `airflow dags test` and reading their XCom rows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.dagrun import DagTestResult, airflow_env, run_dag_test
from tools.servers import LocalServers

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DAGS = REPO_ROOT / "tests" / "dags_for_tests"


def copy_airflow_home(airflow_db: Any, target: Path) -> Path:
    """A private Airflow home whose DB is a copy of the session's migrated one (a copy is instant,
    a migration ~10 s), so each module's runs and XCom rows are its own; on either database."""
    return airflow_db.copy_into(target)


def dag_env(
    home: Path,
    local_stores: LocalServers,
    *,
    backend: str,
    extra: Mapping[str, str] | None = None,
    dags_folder: Path = TEST_DAGS,
) -> dict[str, str]:
    """Environment for `airflow dags test` of a test DAG with ``backend`` against the local stores."""
    return airflow_env(
        home,
        xcom_backend=backend,
        extra={**local_stores.env(), "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder), **(extra or {})},
    )


def run_test_dag(dag_id: str, env: Mapping[str, str], **kwargs: Any) -> DagTestResult:
    # Parsing only the DAG's own file keeps each run a few seconds shorter.
    return run_dag_test(dag_id, env, dag_file=TEST_DAGS / f"{dag_id}.py", **kwargs)


_ROWS = """
import json, sys
from sqlalchemy import select
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

columns = (XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value)
with create_session() as session:
    rows = session.execute(select(*columns).where(XComModel.dag_id == sys.argv[1])).all()
print("ROWS " + json.dumps([dict(zip(("run_id", "task_id", "map_index", "key", "value"), r)) for r in rows]))
"""


def xcom_rows(env: Mapping[str, str], dag_id: str) -> list[dict[str, Any]]:
    """The XCom table's rows of ``dag_id``, read through Airflow's own DB session in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-c", _ROWS, dag_id],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("ROWS ")]
    assert result.returncode == 0 and lines, f"reading the XCom table failed:\n{result.stderr[-3000:]}"
    return json.loads(lines[-1][5:])
