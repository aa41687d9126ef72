"""
## Fetch Pokémon data: pass a pandas DataFrame through XCom

1. `extract_data` asks [PokeAPI](https://pokeapi.co) for the base experience and height of two
   Pokémon and returns them as a JSON-serializable dict of lists.
2. `calculate_xp_per_height` turns that dict into a pandas DataFrame, adds the column
   `xp_per_height` and returns the DataFrame.
3. `print_xp_per_height` prints one line per Pokémon, e.g.
   `pikachu has a base xp to height ratio of 28.0`.

**XCom backend.** Step 2 returns a DataFrame. The pandas backends in `include/` store it as a
Feather object that comes back exactly (dtypes, index); the JSON backends store it as Airflow's own
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

from datetime import timedelta
from typing import Any

import pandas as pd
import pendulum
from airflow.sdk import Param, dag, task

from include.pokeapi import POKEMON_NAME_SCHEMA, get_pokemon, pokeapi_base_url

NAME_HELP = "Lowercase PokeAPI name"


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "favorite_pokemon": Param("pikachu", description="Lowercase PokeAPI name", **POKEMON_NAME_SCHEMA),
        "other_favorite_pokemon": Param(
            "vulpix", description="Lowercase PokeAPI name", **POKEMON_NAME_SCHEMA
        ),
    },
    tags=["xcom", "tutorial", "pandas"],
)
def fetch_pokemon_data_dag() -> None:
    # A dict return annotation would make TaskFlow also push each key as its own XCom (4 stored
    # objects instead of 1); the next task wants the whole dict.
    @task(multiple_outputs=False)
    def extract_data(params: dict[str, Any]) -> dict[str, list]:
        """Fetch both Pokémon from PokeAPI; return a JSON-serializable dict of lists."""
        base_url = pokeapi_base_url()
        names = [params["favorite_pokemon"], params["other_favorite_pokemon"]]
        pokemon = [get_pokemon(base_url, name) for name in names]
        return {
            "pokemon": names,
            "base_experience": [p["base_experience"] for p in pokemon],
            "height": [p["height"] for p in pokemon],
        }

    @task
    def calculate_xp_per_height(pokemon_data: dict[str, list]) -> pd.DataFrame:
        """Return a DataFrame with base XP per height (stored by the configured XCom backend)."""
        df = pd.DataFrame(pokemon_data)
        df["xp_per_height"] = df["base_experience"] / df["height"]
        return df

    @task
    def print_xp_per_height(pokemon_df: pd.DataFrame) -> None:
        for row in pokemon_df.itertuples():
            print(f"{row.pokemon} has a base xp to height ratio of {row.xp_per_height}")

    print_xp_per_height(calculate_xp_per_height(extract_data()))


fetch_pokemon_data_dag()
