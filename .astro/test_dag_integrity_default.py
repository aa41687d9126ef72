"""Every DAG file imports without errors: what `astro dev parse` and `astro deploy` run before going on.

The Astro CLI runs this file with pytest inside the project's image. Its own template builds
`DagBag(include_examples=False)`, an argument Airflow 3.3 removed, so on 3.3 it fails before checking
anything; this version builds the bag from the configured DAGs folder, which never holds examples.

As in the CLI's template, a DAG file that reads a connection or a Variable while it is parsed gets a
stand-in (an empty Connection with that id; the Variable's default, else a placeholder), because no
metadata database or secrets backend is there during a parse check. Unlike the template, `os.getenv`
is left alone: a placeholder for an unset variable would hide the defaults the DAGs here fall back on.
Runtime problems, such as a missing connection once a task runs, are not what this checks.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.configuration import conf
from airflow.dag_processing.dagbag import DagBag
from airflow.models import Connection as ModelConnection
from airflow.models import Variable as ModelVariable
from airflow.sdk import BaseHook, Connection, Variable

PLACEHOLDER = "MOCKED_VARIABLE_VALUE"
# DAG files import `include.…` from the project root, importable in the image; pytest itself puts only
# this file's folder (.astro/) on sys.path.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def _connection(conn_id: str, *args: Any, **kwargs: Any) -> Connection:
    print(f"parse check: connection {conn_id!r} read while parsing; an empty one stands in")
    return Connection(conn_id=conn_id, conn_type="generic")


def _variable(key: str, default: Any = None, deserialize_json: bool = False, **kwargs: Any) -> Any:
    default = kwargs.get("default_var", default)
    print(
        f"parse check: Variable {key!r} read while parsing; {'its default' if default else 'a placeholder'}"
    )
    if default is not None:
        return default
    return {} if deserialize_json else PLACEHOLDER


# Both the Task SDK names (Airflow 3) and the legacy airflow.models ones, which DAG files may still use.
BaseHook.get_connection = classmethod(lambda cls, conn_id, *a, **k: _connection(conn_id))
ModelConnection.get_connection_from_secrets = classmethod(lambda cls, conn_id, *a, **k: _connection(conn_id))
Variable.get = staticmethod(_variable)
ModelVariable.get = staticmethod(_variable)

DAGS_FOLDER = Path(conf.get("core", "dags_folder"))


def _dag_bag() -> DagBag:
    airflow_logger = logging.getLogger("airflow")
    was_disabled = airflow_logger.disabled
    airflow_logger.disabled = True  # one log line per parsed file; the assertions say what matters
    try:
        return DagBag(dag_folder=DAGS_FOLDER, bundle_path=DAGS_FOLDER)
    finally:
        airflow_logger.disabled = was_disabled


DAG_BAG = _dag_bag()
DAG_FILES = sorted(
    str(path.relative_to(DAGS_FOLDER))
    for path in DAGS_FOLDER.rglob("*.py")
    if "__pycache__" not in path.parts
)


def test_dags_folder_holds_dags() -> None:
    # Without it an empty or mis-configured DAGs folder would pass: there would be nothing to check.
    assert DAG_BAG.dags, f"no DAG was loaded from {DAGS_FOLDER} (import errors: {DAG_BAG.import_errors})"


@pytest.mark.parametrize("rel_path", DAG_FILES)
def test_file_imports(rel_path: str) -> None:
    errors = {
        os.path.relpath(DAGS_FOLDER / key, DAGS_FOLDER): value for key, value in DAG_BAG.import_errors.items()
    }
    error = errors.get(rel_path)
    assert error is None, f"{rel_path} failed to import:\n{error.strip()}"
