"""DAG integrity, in the spirit of the test `astro dev init` generates, for Airflow 3.3.

Every DAG file in dags/ imports without errors, and every DAG has tags and at least two retries on each
task. The Astro template builds `DagBag(include_examples=False)`; Airflow 3.3 removed that argument, so
the bag is built from dags/ explicitly (examples are never in it then). Parsing needs no database.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"
MIN_RETRIES = 2
# Leave empty to accept any tag; fill in to hold DAG authors to a fixed vocabulary.
APPROVED_TAGS: set[str] = set()

# Same home as the Makefile uses, in case pytest was started without it: importing Airflow would
# otherwise create ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# These tests check import errors, not parse speed: on a loaded 2-core CI machine the Cosmos DAG has
# taken longer than Airflow's default 30 s per file, which DagBag reports as an import error.
PARSE_TIMEOUT_ENV = {"AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300"}
for _name, _value in PARSE_TIMEOUT_ENV.items():
    os.environ.setdefault(_name, _value)

DAG_FILES = sorted(DAGS_FOLDER.glob("**/*.py"))


@cache
def dag_bag() -> DagBag:
    from airflow.dag_processing.dagbag import DagBag

    # Parsing logs a line per file; the assertions below say what matters.
    airflow_logger = logging.getLogger("airflow")
    was_disabled = airflow_logger.disabled
    airflow_logger.disabled = True
    try:
        # safe_mode=False imports every file, not only those that mention "dag" and "airflow", so a
        # broken helper module in dags/ is caught too.
        return DagBag(dag_folder=DAGS_FOLDER, bundle_path=DAGS_FOLDER, safe_mode=False)
    finally:
        airflow_logger.disabled = was_disabled


def import_errors() -> dict[Path, str]:
    # Keys are relative to the bundle path in Airflow 3; resolving also copes with absolute keys.
    return {(DAGS_FOLDER / key).resolve(): error for key, error in dag_bag().import_errors.items()}


def dags_in(path: Path) -> list:
    return [dag for dag in dag_bag().dags.values() if Path(dag.fileloc).resolve() == path.resolve()]


def _file_id(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def test_dags_folder_holds_dags() -> None:
    # Without this an empty or wholly broken dags/ would pass: the tests below would have nothing to check.
    assert DAG_FILES, f"no Python files in {DAGS_FOLDER}"
    assert dag_bag().dags, f"no DAG could be loaded from {DAGS_FOLDER}; import errors: {import_errors()}"


@pytest.mark.parametrize("path", DAG_FILES, ids=_file_id)
def test_file_imports_without_errors(path: Path) -> None:
    error = import_errors().get(path.resolve())
    assert error is None, f"{_file_id(path)} failed to import:\n{error}"


@pytest.mark.parametrize("path", DAG_FILES, ids=_file_id)
def test_dags_have_tags(path: Path) -> None:
    for dag in dags_in(path):
        assert dag.tags, f"{dag.dag_id} in {_file_id(path)} has no tags"
        if APPROVED_TAGS:
            unapproved = set(dag.tags) - APPROVED_TAGS
            assert not unapproved, f"{dag.dag_id} has tags outside APPROVED_TAGS: {sorted(unapproved)}"


@pytest.mark.parametrize("path", DAG_FILES, ids=_file_id)
def test_every_task_retries_at_least_twice(path: Path) -> None:
    # Checked per task rather than in default_args alone: a task can override the DAG's default.
    for dag in dags_in(path):
        too_few = {task.task_id: task.retries for task in dag.tasks if (task.retries or 0) < MIN_RETRIES}
        assert not too_few, (
            f"{dag.dag_id} in {_file_id(path)} has tasks with retries < {MIN_RETRIES}: {too_few}"
        )


# --- .astro/test_dag_integrity_default.py: what `astro dev parse` and `astro deploy` run ----------------

PARSE_CHECK = PROJECT_ROOT / ".astro" / "test_dag_integrity_default.py"


def run_parse_check(dags_folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """pytest on the parse check in a child process, as the CLI runs it (one process per check)."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **PARSE_TIMEOUT_ENV,
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(PARSE_CHECK), "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_parse_check_passes_on_every_dag_in_dags(tmp_path: Path) -> None:
    result = run_parse_check(DAGS_FOLDER, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # One test per file plus the check that some DAG loaded.
    assert f"{len(DAG_FILES) + 1} passed" in result.stdout, result.stdout


def test_parse_check_fails_on_a_broken_dag_and_names_it(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "fine_dag.py").write_text(
        "import pendulum\nfrom airflow.sdk import dag, task, BaseHook, Variable\n"
        "CONN = BaseHook.get_connection('not_defined_anywhere')\n"
        "LIMIT = Variable.get('not_set', default='5')\n"
        "@dag(start_date=pendulum.datetime(2025, 1, 1), schedule=None)\n"
        "def fine():\n    @task\n    def t():\n        pass\n    t()\nfine()\n"
    )
    (dags / "broken_dag.py").write_text("from airflow.sdk import dag\nimport no_such_module_here\n")
    result = run_parse_check(dags, tmp_path)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 2 passed" in result.stdout, result.stdout
    assert "broken_dag.py failed to import" in result.stdout
    assert "No module named 'no_such_module_here'" in result.stdout
