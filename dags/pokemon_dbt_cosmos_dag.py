"""
## Pokémon through dbt: a dbt project rendered as Airflow tasks by Cosmos

1. `extract_pokemon` asks [PokeAPI](https://pokeapi.co) for each Pokémon in the `pokemon` param and
   returns a pandas DataFrame (id, name, base experience, height, weight).
2. `load_to_duckdb` receives that DataFrame through the configured XCom backend and writes it to the
   table `raw.pokemon` of a DuckDB file, replacing the previous run's rows.
3. `dbt_pokemon` is the dbt project in `dbt/pokemon`, rendered by
   [Cosmos](https://astronomer.github.io/astronomer-cosmos/): every model is a `<model>.run` task
   followed by a `<model>.test` task with that model's dbt tests (`not_null`, `unique`, the project's
   own `accepted_range`). `stg_pokemon` types the raw rows; `pokemon_xp_per_height` adds
   `xp_per_height = base_experience / height_dm`. A failing dbt test fails its task and stops
   everything downstream of it.
4. `report_xp_per_height` prints the mart, one line per Pokémon.

**XCom backend.** Step 1 returns a DataFrame: use a pandas backend from `include/` to keep it in an
object store, e.g. `AIRFLOW__CORE__XCOM_BACKEND=include.minio_xcom_backend_pandas.MinIOXComBackendPandas`.

**Settings** (environment variables, all optional):

- `POKEMON_DUCKDB_PATH`: the DuckDB file the load task and dbt share (default
  `pokemon_dbt/pokemon.duckdb` in the system's temporary directory, `/tmp` in the image: writable by
  the container's user, and never one of the folders `astro dev start` mounts from the host, such as
  `include/`, which that user may not be allowed to write).
- `POKEMON_DBT_EXECUTABLE`: dbt in its own virtualenv (default `dbt_venv/bin/dbt` from the image's
  Dockerfile, else `.venv-dbt/bin/dbt` from `make setup`).
- `POKEMON_DBT_MANIFEST`: the manifest `dbt parse` wrote, which Cosmos renders the dbt tasks from
  (default `dbt/pokemon/target/manifest.json`).

**Connection.** The API address comes from the HTTP connection `pokeapi_default`, as in
`fetch_pokemon_data_dag`; without it the DAG uses `https://pokeapi.co`.

**Single machine only.** Every task after `extract_pokemon` works on that one local DuckDB file, so
all of them must run where it is: under `astro dev start` (the LocalExecutor runs every task in the
scheduler's container) or `make demo`, yes; on a deployment whose tasks run on several workers
(CeleryExecutor, KubernetesExecutor, Astro's hosted workers) they share no disk, and a dbt task on
another worker fails: DuckDB `Cannot open file`, or `Table with name "raw.pokemon" does not exist`.
For that, point `POKEMON_DUCKDB_PATH` at storage every worker mounts, or give dbt a warehouse all of
them reach.
Only the DataFrame travels through the XCom backend's store.

One run at a time: DuckDB lets a single process write a file. How it works and how to run it:
`docs/cosmos.md`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pendulum
from airflow.sdk import Param, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from include.pokeapi import POKEMON_NAME_SCHEMA, get_pokemon, pokeapi_base_url

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt" / "pokemon"
# Written by `dbt parse` when the image is built and by `make setup`, never committed.
DBT_MANIFEST = Path(os.environ.get("POKEMON_DBT_MANIFEST", DBT_PROJECT_DIR / "target" / "manifest.json"))
# The image's venv (Dockerfile) first, then the local one (`make setup`).
DBT_EXECUTABLE_CANDIDATES = (
    PROJECT_ROOT / "dbt_venv" / "bin" / "dbt",
    PROJECT_ROOT / ".venv-dbt" / "bin" / "dbt",
)

DEFAULT_POKEMON = ["pikachu", "vulpix", "snorlax", "eevee"]
RAW_SCHEMA = "raw"
RAW_TABLE = "pokemon"
MART = "main.pokemon_xp_per_height"


def duckdb_path() -> Path:
    """The DuckDB file the load task writes and dbt builds its models in."""
    configured = os.environ.get("POKEMON_DUCKDB_PATH")
    if configured:
        return Path(configured).expanduser()
    # Not under the project: `astro dev start` bind-mounts include/ (and dags/, plugins/, tests/) from
    # the host, where the container's user may have no write access.
    return Path(tempfile.gettempdir()) / "pokemon_dbt" / "pokemon.duckdb"


def dbt_executable() -> Path:
    """dbt from its own virtualenv; where none is installed, the image's path, for a clear error."""
    configured = os.environ.get("POKEMON_DBT_EXECUTABLE")
    if configured:
        return Path(configured).expanduser()
    return next((path for path in DBT_EXECUTABLE_CANDIDATES if path.exists()), DBT_EXECUTABLE_CANDIDATES[0])


def dbt_load_mode() -> LoadMode:
    """How Cosmos reads the project while the DAG file is parsed, without ever running dbt there.

    The manifest is dbt's own view of the project. Without one (dbt not installed yet, e.g. a scheduler
    or a test run before `make setup`), Cosmos's own parser of the project files renders the same
    tasks, so the DAG still imports; running it then needs dbt anyway.
    """
    if DBT_MANIFEST.is_file():
        return LoadMode.DBT_MANIFEST
    log.warning("%s not found (run `make setup`); rendering dbt/pokemon with Cosmos's parser", DBT_MANIFEST)
    return LoadMode.CUSTOM


_load_mode = dbt_load_mode()
_project_config = ProjectConfig(
    dbt_project_path=DBT_PROJECT_DIR,
    manifest_path=DBT_MANIFEST if _load_mode is LoadMode.DBT_MANIFEST else None,
    # The project has no packages: `dbt deps` would only cost time (and need the internet).
    install_dbt_deps=False,
    env_vars={
        # profiles.yml reads it: dbt builds its models in the file the load task wrote.
        "POKEMON_DUCKDB_PATH": str(duckdb_path()),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    },
)
_profile_config = ProfileConfig(
    profile_name="pokemon",
    target_name="dev",
    profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
)
_execution_config = ExecutionConfig(
    execution_mode=ExecutionMode.LOCAL,
    # dbt lives in another virtualenv, so Cosmos must call its executable rather than import dbt.
    invocation_mode=InvocationMode.SUBPROCESS,
    dbt_executable_path=str(dbt_executable()),
)
_render_config = RenderConfig(
    load_method=_load_mode,
    test_behavior=TestBehavior.AFTER_EACH,
    # No DAG schedules on these tables, so Cosmos need not work out an asset per model (through
    # OpenLineage) after every task.
    emit_datasets=False,
)


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "pokemon": Param(
            DEFAULT_POKEMON,
            type="array",
            description="Lowercase PokeAPI names, each once, e.g. snorlax or mr-mime",
            items=POKEMON_NAME_SCHEMA,
            minItems=1,
            maxItems=50,
            # The mart has one row per Pokémon; a repeated name would only fail its unique test.
            uniqueItems=True,
        ),
    },
    tags=["dbt", "cosmos", "duckdb", "pandas", "tutorial"],
)
def pokemon_dbt_cosmos_dag() -> None:
    @task
    def extract_pokemon(params: dict[str, Any]) -> pd.DataFrame:
        """Fetch every Pokémon in the `pokemon` param from PokeAPI; one row each."""
        base_url = pokeapi_base_url()
        rows = []
        for name in params["pokemon"]:
            pokemon = get_pokemon(base_url, name)
            rows.append({key: pokemon[key] for key in ("id", "name", "base_experience", "height", "weight")})
        return pd.DataFrame(rows)

    @task
    def load_to_duckdb(pokemon: pd.DataFrame) -> None:
        """Replace `raw.pokemon` in the DuckDB file with this run's rows."""
        # Imported here, not at the top: parsing the DAG file should not load DuckDB.
        import duckdb

        path = duckdb_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # The connection is closed before dbt runs: DuckDB lets only one process at a time open a file
        # for writing.
        with duckdb.connect(str(path)) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
            conn.register("pokemon_frame", pokemon)
            conn.execute(f"CREATE OR REPLACE TABLE {RAW_SCHEMA}.{RAW_TABLE} AS SELECT * FROM pokemon_frame")
        log.info("Wrote %d rows to %s.%s in %s", len(pokemon), RAW_SCHEMA, RAW_TABLE, path)

    @task
    def report_xp_per_height() -> None:
        import duckdb

        with duckdb.connect(str(duckdb_path()), read_only=True) as conn:
            rows = conn.execute(f"SELECT pokemon_name, xp_per_height FROM {MART} ORDER BY 1").fetchall()
        for name, xp_per_height in rows:
            print(f"{name} has a base xp to height ratio of {xp_per_height}")

    dbt_pokemon = DbtTaskGroup(
        group_id="dbt_pokemon",
        project_config=_project_config,
        profile_config=_profile_config,
        execution_config=_execution_config,
        render_config=_render_config,
    )

    load_to_duckdb(extract_pokemon()) >> dbt_pokemon >> report_xp_per_height()


pokemon_dbt_cosmos_dag()
