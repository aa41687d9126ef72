"""
## Fetch Pokémon data: pass a pandas DataFrame through XCom

1. `extract_data` asks [PokeAPI](https://pokeapi.co) for the base experience and height of two
   Pokémon and returns them as a JSON-serializable dict of lists.
2. `calculate_xp_per_height` turns that dict into a pandas DataFrame, adds the column
   `xp_per_height` and returns the DataFrame.
3. `print_xp_per_height` prints one line per Pokémon, e.g.
   `pikachu has a base xp to height ratio of 28.0`.

**XCom backend.** Step 2 returns a DataFrame. The pandas backends in `include/` store it as a
Parquet object that comes back exactly (dtypes, index); the JSON backends store it as Airflow's own
serializer does (Parquet inside JSON). For example, in `.env`:

```
AIRFLOW__CORE__XCOM_BACKEND=include.minio_xcom_backend_pandas.MinIOXComBackendPandas
```

(or `S3XComBackendPandas`, `GCSXComBackendPandas`, `WasbXComBackendPandas` from the matching
`include.*_xcom_backend_pandas` module). Airflow's default backend also handles it, but stores the
DataFrame in the metadata database, which is what a custom backend avoids.

**Params.** Trigger the DAG from the UI and fill in the form to pick your own favourites:
`favorite_pokemon` and `other_favorite_pokemon` take lowercase PokeAPI names such as `snorlax`
or `mr-mime`. An unknown name fails `extract_data` at once, naming the Pokémon.

**Connection.** The API address comes from the HTTP connection `pokeapi_default`
(host `https://pokeapi.co`). Without that connection the DAG uses `https://pokeapi.co`.
Transient failures (HTTP 429 or 5xx, connection errors, time-outs) are retried twice within the
task after a short pause, then by the task's own retries.
"""

import logging
import time
from datetime import timedelta
from typing import Any

import pandas as pd
import pendulum
import requests
from airflow.sdk import BaseHook, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

log = logging.getLogger(__name__)

POKEAPI_CONN_ID = "pokeapi_default"
DEFAULT_BASE_URL = "https://pokeapi.co"
# Statuses that say "try again later", not "your request is wrong".
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
ATTEMPTS = 3
# (connect, read) in seconds: a hung API must not hold a worker slot until the task times out.
TIMEOUT = (5, 30)
# PokeAPI names are lowercase, with digits and hyphens (porygon2, mr-mime); anything else is a typo.
POKEMON_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "maxLength": 50}


def _pokeapi_base_url() -> str:
    try:
        conn = BaseHook.get_connection(POKEAPI_CONN_ID)
    except AirflowNotFoundException:
        log.info("Connection %r is not defined; using %s", POKEAPI_CONN_ID, DEFAULT_BASE_URL)
        return DEFAULT_BASE_URL
    base_url = (conn.host or DEFAULT_BASE_URL).rstrip("/")
    # Same reading of an HTTP connection as the http provider's HttpHook.
    if "://" not in base_url:
        base_url = f"{conn.schema or 'http'}://{base_url}"
    if conn.port:
        base_url = f"{base_url}:{conn.port}"
    return base_url


def _get_pokemon(base_url: str, name: str) -> dict[str, Any]:
    url = f"{base_url}/api/v2/pokemon/{name}"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = requests.get(url, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as err:
            problem = f"{type(err).__name__}: {err}"
        else:
            if response.status_code == 404:
                # Retrying cannot make a misspelt name exist.
                raise AirflowFailException(f"PokeAPI knows no Pokémon called {name!r} (404 from {url})")
            if response.status_code not in TRANSIENT_STATUSES:
                response.raise_for_status()
                return response.json()
            problem = f"HTTP {response.status_code}"
        if attempt < ATTEMPTS:
            delay = 2 ** (attempt - 1)
            log.warning("%s from %s (attempt %d/%d), retrying in %ds", problem, url, attempt, ATTEMPTS, delay)
            time.sleep(delay)
    raise RuntimeError(f"PokeAPI still failing for {name!r} after {ATTEMPTS} attempts: {problem}")


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "favorite_pokemon": Param("pikachu", description="Lowercase PokeAPI name", **POKEMON_NAME),
        "other_favorite_pokemon": Param("vulpix", description="Lowercase PokeAPI name", **POKEMON_NAME),
    },
    tags=["xcom", "tutorial", "pandas"],
)
def fetch_pokemon_data_dag() -> None:
    # A dict return annotation would make TaskFlow also push each key as its own XCom (4 stored
    # objects instead of 1); the next task wants the whole dict.
    @task(multiple_outputs=False)
    def extract_data(params: dict[str, Any]) -> dict[str, list]:
        """Fetch both Pokémon from PokeAPI; return a JSON-serializable dict of lists."""
        base_url = _pokeapi_base_url()
        names = [params["favorite_pokemon"], params["other_favorite_pokemon"]]
        pokemon = [_get_pokemon(base_url, name) for name in names]
        return {
            "pokemon": names,
            "base_experience": [p["base_experience"] for p in pokemon],
            "height": [p["height"] for p in pokemon],
        }

    @task
    def calculate_xp_per_height(pokemon_data: dict[str, list]) -> pd.DataFrame:
        """Return a DataFrame with base XP per height: a JSON-only XCom backend cannot store it."""
        df = pd.DataFrame(pokemon_data)
        df["xp_per_height"] = df["base_experience"] / df["height"]
        return df

    @task
    def print_xp_per_height(pokemon_df: pd.DataFrame) -> None:
        for row in pokemon_df.itertuples():
            print(f"{row.pokemon} has a base xp to height ratio of {row.xp_per_height}")

    print_xp_per_height(calculate_xp_per_height(extract_data()))


fetch_pokemon_data_dag()
