"""The dbt/Cosmos Pokémon DAG, run for real: PokeAPI stand-in -> MinIO XCom -> DuckDB -> dbt via Cosmos.

One `airflow dags test` run (about a minute: every dbt model and test task starts a dbt process)
is shared by the assertions on it. dbt comes from `.venv-dbt` (`make setup`); the DuckDB file goes to
a temporary directory, never into the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from include.xcom_backend.registry import TABLE
from tests.conftest import AirflowDb, stores_required
from tests.support.xcom_calls import FRAME_EXTENSION
from tools.dagrun import DagTestResult, airflow_env, run_dag_test
from tools.pokeapi_standin import DEFAULT_DATA_DIR, PokeApiStandin
from tools.servers import LocalServers

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "pokemon_dbt_cosmos_dag"
DAG_FILE = PROJECT_ROOT / "dags" / f"{DAG_ID}.py"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt" / "pokemon"
DBT = PROJECT_ROOT / ".venv-dbt" / "bin" / "dbt"
XCOM_BACKEND = "include.minio_xcom_backend_pandas.MinIOXComBackendPandas"
DEFAULT_POKEMON = ["pikachu", "vulpix", "snorlax", "eevee"]
# One run and one test task per model, in this order: Cosmos's TestBehavior.AFTER_EACH.
DBT_TASKS = [
    "dbt_pokemon.stg_pokemon.run",
    "dbt_pokemon.stg_pokemon.test",
    "dbt_pokemon.pokemon_xp_per_height.run",
    "dbt_pokemon.pokemon_xp_per_height.test",
]

pytestmark = [pytest.mark.e2e, pytest.mark.stores, pytest.mark.slow]


def require_dbt() -> None:
    if DBT.exists():
        return
    message = f"dbt is not installed at {DBT}; run `make setup`"
    if stores_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def expected_xp_per_height(names: list[str]) -> dict[str, float]:
    """base_experience / height from the stand-in's data, the numbers the mart must hold."""
    expected = {}
    for name in names:
        pokemon = json.loads((DEFAULT_DATA_DIR / f"{name}.json").read_text())
        expected[name] = pokemon["base_experience"] / pokemon["height"]
    return expected


def read_rows(duckdb_file: Path, query: str) -> list[tuple]:
    # Read-only, so the check can never be what holds DuckDB's write lock.
    with duckdb.connect(str(duckdb_file), read_only=True) as conn:
        return conn.execute(query).fetchall()


@dataclass(frozen=True)
class CosmosRun:
    result: DagTestResult
    duckdb_file: Path
    xcom_keys: list[str]


@pytest.fixture(scope="module")
def cosmos_run(
    tmp_path_factory: pytest.TempPathFactory, local_stores: LocalServers, airflow_db: AirflowDb
) -> Iterator[CosmosRun]:
    require_dbt()
    duckdb_file = tmp_path_factory.mktemp("cosmos") / "warehouse" / "pokemon.duckdb"
    with PokeApiStandin() as api:
        env = airflow_env(
            airflow_db.home,
            xcom_backend=XCOM_BACKEND,
            connections={"pokeapi_default": {"conn_type": "http", "host": api.base_url}},
            extra={
                **local_stores.env(),
                "POKEMON_DUCKDB_PATH": str(duckdb_file),
                # Cosmos reports every task run to an analytics endpoint; tests stay on this machine.
                "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            },
        )
        result = run_dag_test(DAG_ID, env, dag_file=DAG_FILE, timeout=420)
    listing = local_stores.seaweedfs.client().list_objects_v2(
        Bucket=TABLE["minio"].default_bucket, Prefix=f"xcom/{DAG_ID}/"
    )
    yield CosmosRun(result, duckdb_file, [obj["Key"] for obj in listing.get("Contents", [])])


def test_run_succeeds_with_each_dbt_model_and_its_tests_as_tasks(cosmos_run: CosmosRun) -> None:
    result = cosmos_run.result
    assert result.state == "success", result.output[-20000:]

    started = re.findall(r"\[DAG TEST\] starting task_id=(\S+)", result.output)
    assert started == ["extract_pokemon", "load_to_duckdb", *DBT_TASKS, "report_xp_per_height"], started
    # Each dbt task ran its own dbt command: a run of one model, then that model's tests.
    dbt_commands = re.findall(
        r"Running command: \['[^']*/dbt', '(run|test)', '--select', '([^']+)'", result.output
    )
    assert dbt_commands == [
        ("run", "fqn:pokemon.staging.stg_pokemon"),
        ("test", "stg_pokemon"),
        ("run", "fqn:pokemon.marts.pokemon_xp_per_height"),
        ("test", "pokemon_xp_per_height"),
    ], dbt_commands
    # 9 tests on the staging model, 4 on the mart, all of them passed.
    assert re.findall(r"Done\. PASS=(\d+) WARN=0 ERROR=0", result.output) == ["1", "9", "1", "4"]
    assert "usage metrics" not in result.output, "Cosmos telemetry was not switched off"


def test_dataframe_went_through_the_minio_backend(cosmos_run: CosmosRun) -> None:
    assert cosmos_run.result.state == "success", cosmos_run.result.output[-20000:]
    extract_objects = [key for key in cosmos_run.xcom_keys if "/extract_pokemon/" in key]
    assert len(extract_objects) == 1 and extract_objects[0].endswith(FRAME_EXTENSION), cosmos_run.xcom_keys


def test_mart_holds_xp_per_height_of_each_pokemon(cosmos_run: CosmosRun) -> None:
    assert cosmos_run.result.state == "success", cosmos_run.result.output[-20000:]

    rows = read_rows(
        cosmos_run.duckdb_file, "SELECT pokemon_name, xp_per_height FROM main.pokemon_xp_per_height"
    )
    # Exact equality: DuckDB's double division rounds exactly as Python's does.
    assert dict(rows) == expected_xp_per_height(DEFAULT_POKEMON)
    assert len(rows) == len(DEFAULT_POKEMON)
    assert dict(rows)["pikachu"] == 28.0 and dict(rows)["eevee"] == 65 / 3

    raw = read_rows(cosmos_run.duckdb_file, "SELECT name, id, height FROM raw.pokemon ORDER BY id")
    assert raw == [("pikachu", 25, 4), ("vulpix", 37, 6), ("eevee", 133, 3), ("snorlax", 143, 21)]
    for name, xp_per_height in expected_xp_per_height(DEFAULT_POKEMON).items():
        assert f"{name} has a base xp to height ratio of {xp_per_height}" in cosmos_run.result.lines


def test_dag_renders_the_same_tasks_without_manifest_or_dbt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler or test run without dbt installed still imports the DAG, with the same tasks."""
    from airflow.dag_processing.dagbag import DagBag

    def parse() -> dict[str, list[str]]:
        bag = DagBag(dag_folder=DAG_FILE, bundle_path=DAG_FILE.parent, safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        dag = bag.dags[DAG_ID]
        return {task.task_id: sorted(task.upstream_task_ids) for task in dag.tasks}

    require_dbt()  # the manifest comes with dbt (`make setup`)
    # Import errors are the point, not parse speed: a loaded CI machine has passed Airflow's 30 s.
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")
    with_manifest = parse()
    monkeypatch.setenv("POKEMON_DBT_MANIFEST", str(DBT_PROJECT_DIR / "no-such-manifest.json"))
    monkeypatch.setenv("POKEMON_DBT_EXECUTABLE", "/nonexistent/dbt")
    without = parse()

    assert without == with_manifest
    assert set(DBT_TASKS) <= set(with_manifest)
    assert with_manifest["dbt_pokemon.stg_pokemon.run"] == ["load_to_duckdb"]
    assert with_manifest["report_xp_per_height"] == ["dbt_pokemon.pokemon_xp_per_height.test"]


def test_accepted_range_fails_on_a_pokemon_without_height(tmp_path: Path) -> None:
    """The project's own generic test catches what would divide by zero in the mart."""
    require_dbt()
    duckdb_file = tmp_path / "bad.duckdb"
    with duckdb.connect(str(duckdb_file)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute(
            "CREATE TABLE raw.pokemon AS SELECT * FROM (VALUES (25, 'pikachu', 112, 4, 60),"
            " (0, 'missingno', 1, 0, 10)) AS t(id, name, base_experience, height, weight)"
        )
    # A copy of the project, so dbt's target/ and logs/ of this run stay out of the repository.
    project = tmp_path / "pokemon"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    result = subprocess.run(
        [str(DBT), "build", "--project-dir", str(project), "--profiles-dir", str(project)],
        env={
            **os.environ,
            "POKEMON_DUCKDB_PATH": str(duckdb_file),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert re.search(r"FAIL 1 accepted_range_stg_pokemon_height_dm", result.stdout), result.stdout
    # The mart was never built from the bad staging rows: dbt build stops downstream of a failed test.
    assert "SKIP relation main.pokemon_xp_per_height" in result.stdout, result.stdout


def test_default_duckdb_file_is_outside_the_folders_astro_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """`astro dev start` bind-mounts dags/, include/, plugins/ and tests/ from the host."""
    import tempfile

    from dags.pokemon_dbt_cosmos_dag import duckdb_path

    monkeypatch.delenv("POKEMON_DUCKDB_PATH", raising=False)
    default = duckdb_path()
    assert default.is_relative_to(Path(tempfile.gettempdir())), default
    assert not default.resolve().is_relative_to(PROJECT_ROOT), default
    monkeypatch.setenv("POKEMON_DUCKDB_PATH", "/data/shared/pokemon.duckdb")
    assert duckdb_path() == Path("/data/shared/pokemon.duckdb")


@pytest.mark.parametrize("folder_exists", [False, True], ids=["no-folder", "empty-folder"])
def test_dbt_task_without_the_load_tasks_file_fails_naming_it(tmp_path: Path, folder_exists: bool) -> None:
    """What a dbt task meets on a worker that did not run the load task (the DAG is single-machine)."""
    require_dbt()
    duckdb_file = tmp_path / "elsewhere" / "pokemon.duckdb"
    if folder_exists:
        duckdb_file.parent.mkdir()
    project = tmp_path / "pokemon"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    result = subprocess.run(
        [
            str(DBT),
            "run",
            "--select",
            "stg_pokemon",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ],
        env={
            **os.environ,
            "POKEMON_DUCKDB_PATH": str(duckdb_file),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    expected = 'Table with name "raw.pokemon" does not exist' if folder_exists else "Cannot open file"
    assert expected in output, output
