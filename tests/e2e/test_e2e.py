"""The tutorial end to end: both DAGs under each of the eight backend classes, with `airflow dags test`.

Runs what `make demo --offline` runs (same code: tools.demo.run_matrix) against the session's local
stores and a PokeAPI stand-in, then checks task output, the objects in each bucket, and that the
DataFrame read back from the bucket equals the one the task computed. The metadata DB is the
session's kind (XCOM_TEST_DB): a SQLite file per Airflow home, or one PostgreSQL database they share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from include.xcom_backend.reference import Reference
from tests.support.dagruns import xcom_rows
from tests.support.xcom_calls import FRAME_EXTENSION
from tools.dagrun import airflow_env
from tools.demo import BACKENDS, DAGS, DemoRun, run_matrix
from tools.pokeapi_standin import PokeApiStandin
from tools.servers.postgres import SQL_ALCHEMY_CONN

# The first test waits for the module's 16 `airflow dags test` runs (two at a time), ~70 s each on a
# loaded 2-core machine: more than the suite's 600 s per test. Three minutes on SQLite even on a quiet
# machine, so it runs in `make test-slow` (and on PostgreSQL in `make test-postgres`).
pytestmark = [pytest.mark.stores, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

POKEAPI_DATA = Path(__file__).resolve().parents[1] / "data" / "pokeapi"


@dataclass(frozen=True)
class Matrix:
    runs: dict[tuple[str, str], DemoRun]
    homes: list[Path]
    db_env: dict[str, str]


@pytest.fixture(scope="module")
def matrix(local_stores, airflow_db, tmp_path_factory) -> Matrix:
    base_home = tmp_path_factory.mktemp("e2e")
    db_env = airflow_db.new_database_env()
    with PokeApiStandin() as api:
        results = run_matrix(
            BACKENDS,
            list(DAGS),
            base_home=base_home,
            store_env={**local_stores.env(), **db_env},
            pokeapi_url=api.base_url,
            workers=2,
        )
    runs = {(run.backend, run.dag_id): run for run in results}
    return Matrix(runs, sorted(base_home.glob("home-*")), db_env)


@pytest.fixture(scope="module")
def runs(matrix: Matrix) -> dict[tuple[str, str], DemoRun]:
    return matrix.runs


def test_every_reference_is_a_row_of_the_sessions_metadata_database(matrix, airflow_db):
    """What the runs wrote went through the session's database: on PostgreSQL the URL names it."""
    rows = []
    for home in matrix.homes:
        env = airflow_env(home, extra=matrix.db_env)
        assert (airflow_db.kind == "postgres") == env.get(SQL_ALCHEMY_CONN, "").startswith("postgresql://")
        rows += [row for dag_id in DAGS for row in xcom_rows(env, dag_id)]
    # Each row names its object (include/xcom_backend/preview.py); the logs name the same references.
    in_database = {str(ref) for row in rows if (ref := Reference.parse(row["value"])) is not None}
    written = {reference for run in matrix.runs.values() for reference in run.references}
    assert len(written) == 3 * len(BACKENDS)  # one from simple_xcom_dag, two from the Pokémon DAG
    assert written <= in_database, sorted(written - in_database)[:3]


def _short(path: str) -> str:
    return path.rsplit(".", 1)[1]


def _expected_frame() -> pd.DataFrame:
    rows = [json.loads((POKEAPI_DATA / f"{name}.json").read_text()) for name in ("pikachu", "vulpix")]
    frame = pd.DataFrame(
        {
            "pokemon": [r["name"] for r in rows],
            "base_experience": [r["base_experience"] for r in rows],
            "height": [r["height"] for r in rows],
        }
    )
    frame["xp_per_height"] = frame["base_experience"] / frame["height"]
    return frame


@pytest.mark.parametrize("backend", BACKENDS, ids=_short)
def test_simple_dag_passes_the_number_through_the_bucket(runs, backend):
    run = runs[(backend, "simple_xcom_dag")]
    assert run.result.succeeded, run.result.output[-4000:]
    (reference,) = run.references
    assert len(run.objects) == 1 and Reference.parse(reference).key == run.objects[0]
    picked = Reference.parse(reference)
    value = _load(backend).read(picked)
    assert isinstance(value, int) and 1 <= value <= 10
    assert str(value) in run.result.lines  # print_a_number printed what the bucket holds


@pytest.mark.parametrize("backend", BACKENDS, ids=_short)
def test_pokemon_dag_passes_the_dataframe_through_the_bucket(runs, backend):
    run = runs[(backend, "fetch_pokemon_data_dag")]
    assert run.result.succeeded, run.result.output[-4000:]
    assert run.pokemon_lines == [
        "pikachu has a base xp to height ratio of 28.0",
        "vulpix has a base xp to height ratio of 10.0",
    ]
    # extract_data's dict and calculate_xp_per_height's DataFrame, both in the bucket.
    assert len(run.objects) == 2
    references = {Reference.parse(r).key.split("/")[-4]: Reference.parse(r) for r in run.references}
    assert set(references) == {"extract_data", "calculate_xp_per_height"}
    frame_ref = references["calculate_xp_per_height"]
    assert frame_ref.key in run.objects
    is_pandas_backend = backend.endswith("Pandas")
    assert frame_ref.extension == (FRAME_EXTENSION if is_pandas_backend else ".json")
    frame = _load(backend).read(frame_ref)
    pd.testing.assert_frame_equal(frame, _expected_frame(), check_exact=True)


def _load(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)
