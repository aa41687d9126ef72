"""A small PokeAPI client shared by the Pokémon DAGs: base URL from an Airflow connection, timeouts,
retries for transient failures, and a clear failure for a name PokeAPI does not know."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

POKEAPI_CONN_ID = "pokeapi_default"
DEFAULT_BASE_URL = "https://pokeapi.co"
# Statuses that say "try again later", not "your request is wrong".
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
ATTEMPTS = 3
# (connect, read) in seconds: a hung API must not hold a worker slot until the task times out.
TIMEOUT = (5, 30)
# PokeAPI names are lowercase, with digits and hyphens (porygon2, mr-mime); anything else is a typo.
POKEMON_NAME_SCHEMA = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "maxLength": 50}


def pokeapi_base_url(conn_id: str = POKEAPI_CONN_ID) -> str:
    """The API's base URL from the HTTP connection, read as the http provider's HttpHook reads it;
    https://pokeapi.co when the connection is not defined, so the DAGs work out of the box."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.info("Connection %r is not defined; using %s", conn_id, DEFAULT_BASE_URL)
        return DEFAULT_BASE_URL
    base_url = (conn.host or DEFAULT_BASE_URL).rstrip("/")
    if "://" not in base_url:
        base_url = f"{conn.schema or 'http'}://{base_url}"
    if conn.port:
        base_url = f"{base_url}:{conn.port}"
    return base_url


def get_pokemon(base_url: str, name: str) -> dict[str, Any]:
    """One Pokémon's record. Transient failures are retried here (1 s, 2 s), then by the task's retries;
    an unknown name fails the task at once, naming it."""
    import requests
    from airflow.sdk.exceptions import AirflowFailException

    url = f"{base_url}/api/v2/pokemon/{name}"
    problem = ""
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
