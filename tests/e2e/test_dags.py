"""Both tutorial DAGs, run for real with `airflow dags test` against a local PokeAPI stand-in.

Each DAG run is a fresh `airflow` process (15-20 s), so the cases are few and each proves one thing.
The XCom backend is a parameter: the happy paths run once per entry of XCOM_BACKENDS.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.dagrun import DagTestResult, airflow_env, migrate_db, run_dag_test
from tools.pokeapi_standin import PokeApiStandin

pytestmark = pytest.mark.e2e

# None is Airflow's default: the metadata DB, where Airflow 3.3's serializer also handles DataFrames.
# The eight object-store backends run both DAGs in tests/e2e/test_e2e.py.
XCOM_BACKENDS = [pytest.param(None, id="default-db-xcom")]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a migrated SQLite DB, shared by this module's DAG runs."""
    home = tmp_path_factory.mktemp("airflow_home")
    migrate_db(airflow_env(home))
    return home


@pytest.fixture
def pokeapi() -> Iterator[PokeApiStandin]:
    # One per test, so request counts and injected failures belong to that test alone.
    with PokeApiStandin() as api:
        yield api


@pytest.fixture(params=XCOM_BACKENDS)
def xcom_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment variables that select the XCom backend (and, for a store, reach that store)."""
    if request.param is None:
        return {}
    # An object-store backend also needs its store: add request.getfixturevalue("local_stores").env().
    return {"AIRFLOW__CORE__XCOM_BACKEND": request.param}


def run_pokemon_dag(
    home: Path,
    api: PokeApiStandin,
    *,
    conf: dict[str, str] | None = None,
    xcom_env: dict[str, str] | None = None,
) -> DagTestResult:
    env = airflow_env(
        home,
        connections={"pokeapi_default": {"conn_type": "http", "host": api.base_url}},
        extra=xcom_env,
    )
    return run_dag_test("fetch_pokemon_data_dag", env, conf=conf)


def test_standin_serves_real_values_404s_and_injected_failures() -> None:
    with PokeApiStandin(failures={"eevee": 1}) as api:
        with urllib.request.urlopen(f"{api.base_url}/api/v2/pokemon/pikachu", timeout=5) as response:
            assert json.load(response)["base_experience"] == 112
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(f"{api.base_url}/api/v2/pokemon/missingno", timeout=5)
        assert (not_found.value.code, not_found.value.read()) == (404, b"Not Found")
        with pytest.raises(urllib.error.HTTPError) as injected:
            urllib.request.urlopen(f"{api.base_url}/api/v2/pokemon/eevee", timeout=5)
        assert injected.value.code == 503
        with urllib.request.urlopen(f"{api.base_url}/api/v2/pokemon/eevee", timeout=5) as response:
            assert json.load(response)["height"] == 3
        assert api.request_count("eevee") == 2


def test_simple_xcom_dag_passes_the_number(airflow_home: Path, xcom_env: dict[str, str]) -> None:
    result = run_dag_test("simple_xcom_dag", airflow_env(airflow_home, extra=xcom_env))

    assert result.state == "success", result.output
    picked = re.search(r"Picked (\d+);", result.output)
    assert picked, result.output
    assert 1 <= int(picked[1]) <= 10
    # The downstream task prints exactly the number that went through XCom.
    assert picked[1] in result.lines, result.output


def test_pokemon_dag_default_params(
    airflow_home: Path, pokeapi: PokeApiStandin, xcom_env: dict[str, str]
) -> None:
    result = run_pokemon_dag(airflow_home, pokeapi, xcom_env=xcom_env)

    assert result.state == "success", result.output
    assert "pikachu has a base xp to height ratio of 28.0" in result.lines, result.output
    assert "vulpix has a base xp to height ratio of 10.0" in result.lines, result.output
    assert (pokeapi.request_count("pikachu"), pokeapi.request_count("vulpix")) == (1, 1)


def test_pokemon_dag_conf_overrides_params(
    airflow_home: Path, pokeapi: PokeApiStandin, xcom_env: dict[str, str]
) -> None:
    conf = {"favorite_pokemon": "snorlax", "other_favorite_pokemon": "eevee"}
    result = run_pokemon_dag(airflow_home, pokeapi, conf=conf, xcom_env=xcom_env)

    assert result.state == "success", result.output
    # 189 / 21 and 65 / 3, printed as Python prints floats
    assert "snorlax has a base xp to height ratio of 9.0" in result.lines, result.output
    assert "eevee has a base xp to height ratio of 21.666666666666668" in result.lines, result.output
    assert pokeapi.request_count("pikachu") == 0


def test_unknown_pokemon_fails_at_once_naming_it(airflow_home: Path, pokeapi: PokeApiStandin) -> None:
    result = run_pokemon_dag(airflow_home, pokeapi, conf={"other_favorite_pokemon": "missingno"})

    assert result.state == "failed", result.output
    assert "PokeAPI knows no Pokémon called 'missingno'" in result.output
    # Neither the in-task retry nor the task's own retries asked again: a 404 will not go away.
    assert pokeapi.request_count("missingno") == 1


def test_transient_503_is_retried_within_the_task(airflow_home: Path, pokeapi: PokeApiStandin) -> None:
    pokeapi.fail_next("pikachu", 2)
    result = run_pokemon_dag(airflow_home, pokeapi)

    assert result.state == "success", result.output
    assert "HTTP 503" in result.output
    assert "pikachu has a base xp to height ratio of 28.0" in result.lines, result.output
    assert pokeapi.request_count("pikachu") == 3


def test_invalid_name_is_rejected_before_the_run(airflow_home: Path, pokeapi: PokeApiStandin) -> None:
    result = run_pokemon_dag(airflow_home, pokeapi, conf={"favorite_pokemon": "Pikachu"})

    assert result.state is None and result.returncode != 0, result.output
    assert "Pikachu" in result.output
    assert pokeapi.request_count("Pikachu") + pokeapi.request_count("pikachu") == 0
