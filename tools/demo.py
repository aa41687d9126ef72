"""`make demo`: the tutorial end to end, with no Docker and no cloud account.

Starts SeaweedFS (S3 API, for the S3 and MinIO backends), Azurite and fake-gcs-server on loopback,
creates the tutorial's buckets, loads `airflow_settings.yaml` into a local Airflow (SQLite under
`.airflow/demo`), points the three store connections at the local servers, and runs both tutorial
DAGs with `airflow dags test` once per backend class. Reports each run as it finishes, then prints
what each run wrote to its bucket and the Pokémon lines; exits 1 if any run failed.

    make demo                              # PokeAPI on the internet (the stand-in if it is unreachable)
    make demo DEMO_ARGS=--offline          # a local PokeAPI stand-in with recorded responses
    make demo DEMO_ARGS=--online           # the real PokeAPI or nothing
    make demo DEMO_ARGS="--backends s3_xcom_backend_pandas.S3XComBackendPandas --dags simple_xcom_dag"
    make demo DEMO_ARGS=--verbose                      # with the libraries' INFO logs (every SDK request)
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from include.xcom_backend.catalog import TUTORIAL_BACKENDS
from tools.console import progress, quiet_libraries
from tools.dagrun import PROJECT_ROOT, DagTestResult, airflow_env, migrate_db, run_dag_test, run_module

BACKENDS = list(TUTORIAL_BACKENDS)
DAGS = {
    "simple_xcom_dag": PROJECT_ROOT / "dags" / "simple_xcom_dag.py",
    "fetch_pokemon_data_dag": PROJECT_ROOT / "dags" / "fetch_pokemon_data_dag.py",
}
_REFERENCE = re.compile(r"stored as (xcom_\w+://\S+#sha256=[0-9a-f]{64})")
_RUN_ID = re.compile(r"DagRun Finished: dag_id=[^,]+,.*?\brun_id=([^,]+),")
_POKEMON = re.compile(r"^(\S+ has a base xp to height ratio of \S+)$")


@dataclass
class DemoRun:
    backend: str
    dag_id: str
    result: DagTestResult
    references: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    pokemon_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.succeeded and bool(self.objects)


def list_run_objects(run_id: str, dag_id: str, references: Iterable[str]) -> list[str]:
    """Keys in the bucket(s) under this run's prefix, read back from the store, not from the log."""
    from include.xcom_backend.reference import run_prefix
    from include.xcom_backend.stores import STORES

    keys: set[str] = set()
    for scheme, bucket, prefix in {(r.scheme, r.bucket, run_prefix(r.key)) for r in _parse(references)}:
        keys.update(obj.key for obj in STORES[scheme](bucket).list(prefix))
    return sorted(keys)


def _parse(references: Iterable[str]) -> list:
    from include.xcom_backend.reference import Reference

    return [r for r in map(Reference.parse, references) if r is not None]


def prepare_home(
    home: Path, env_extra: Mapping[str, str], connections: Mapping[str, object]
) -> dict[str, str]:
    """A migrated Airflow home with airflow_settings.yaml loaded, the way `astro dev start` loads it."""
    env = airflow_env(home, connections=connections, extra=env_extra)
    progress("airflow db migrate ...")
    migrate_db(env)
    progress("airflow dags reserialize, then airflow_settings.yaml ...")
    # Parse dags/ into the DB once, as a scheduler would have: a first `airflow dags test` in a home
    # with no DAG rows inserts every DAG of the folder and can trip over its own insert on SQLite
    # ("UNIQUE constraint failed: dag.dag_id"), seen once in CI.
    run_module(env, "airflow", "dags", "reserialize")
    run_module(env, "tools.airflow_settings", "--file", str(PROJECT_ROOT / "airflow_settings.yaml"))
    return env


def run_matrix(
    backends: list[str],
    dag_ids: list[str],
    *,
    base_home: Path,
    store_env: Mapping[str, str],
    pokeapi_url: str | None,
    workers: int = 2,
) -> list[DemoRun]:
    """Run every DAG under every backend; `workers` Airflow homes run side by side.

    The store connections come from `store_env` (environment variables, which take precedence over
    the connections airflow_settings.yaml put in the database); PokeAPI from `pokeapi_url` if given.
    """
    connections: dict[str, object] = {}
    if pokeapi_url:
        connections["pokeapi_default"] = {"conn_type": "http", "host": pokeapi_url}
    first = base_home / "home-0"
    prepare_home(first, store_env, connections)
    homes = [first]
    for i in range(1, workers):
        # A copy of the prepared home: SQLite is not shared between concurrent `dags test` runs.
        home = base_home / f"home-{i}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(first, home)
        homes.append(home)

    jobs = [(backend, dag_id) for backend in backends for dag_id in dag_ids]
    progress(f"running {len(jobs)} DAG runs, {workers} at a time")
    finished: list[DemoRun] = []

    def work(slot: int) -> list[DemoRun]:
        done = []
        for backend, dag_id in jobs[slot::workers]:
            env = airflow_env(homes[slot], xcom_backend=backend, connections=connections, extra=store_env)
            result = run_dag_test(dag_id, env, dag_file=DAGS.get(dag_id))
            run = DemoRun(backend, dag_id, result)
            run.references = _REFERENCE.findall(result.output)
            run.pokemon_lines = [m.group(1) for line in result.lines if (m := _POKEMON.match(line))]
            run_id = _RUN_ID.search(result.output)
            if run_id and run.references:
                run.objects = list_run_objects(run_id.group(1), dag_id, run.references)
            done.append(run)
            finished.append(run)
            state = "ok" if run.ok else f"FAILED ({result.state or 'no run'})"
            name = backend.removeprefix("include.")
            progress(f"{len(finished)}/{len(jobs)} {name} / {dag_id}: {state} in {result.duration:.0f} s")
        return done

    with ThreadPoolExecutor(workers) as pool:
        runs = [run for chunk in pool.map(work, range(workers)) for run in chunk]
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(runs, key=lambda r: order[(r.backend, r.dag_id)])


def pokeapi_problem(url: str = "https://pokeapi.co/api/v2/pokemon/pikachu") -> str | None:
    """Why the real PokeAPI cannot be used from here, or None if it answers."""
    import requests

    try:
        requests.head(url, timeout=5).raise_for_status()
    except requests.RequestException as exc:
        return type(exc).__name__
    return None


def render(runs: list[DemoRun]) -> str:
    rows = [("backend", "DAG", "state", "objects", "Pokémon lines")]
    for run in runs:
        rows.append(
            (
                run.backend.removeprefix("include."),
                run.dag_id,
                run.result.state or "no run",
                str(len(run.objects)),
                "; ".join(run.pokemon_lines),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("Objects written (bucket keys):")
    for run in runs:
        for reference, key in zip(run.references, run.objects, strict=False):
            lines.append(f"  {reference.split('://', 1)[0]}  {key}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="use a local PokeAPI stand-in")
    mode.add_argument("--online", action="store_true", help="fail rather than fall back to the stand-in")
    parser.add_argument("--backends", help="comma-separated class paths (without 'include.')")
    parser.add_argument("--dags", help="comma-separated DAG ids")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = parser.parse_args(argv)
    quiet_libraries(args.verbose)

    from tools.pokeapi_standin import PokeApiStandin
    from tools.servers import LocalServers, ServerStartError

    backends = [f"include.{b}" for b in args.backends.split(",")] if args.backends else BACKENDS
    dag_ids = args.dags.split(",") if args.dags else list(DAGS)
    base_home = PROJECT_ROOT / ".airflow" / "demo"
    shutil.rmtree(base_home, ignore_errors=True)

    servers = LocalServers(base_home / "servers")
    progress(f"starting the local servers ({', '.join(servers.servers)}) ...")
    try:
        servers.start()
    except ServerStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        with servers.environment() as store_env:
            servers.create_default_buckets()
            progress(f"local servers up in {servers.startup_seconds:.1f} s; default buckets created")
            offline = args.offline
            if not offline:
                problem = pokeapi_problem()
                if problem and args.online:
                    print(f"PokeAPI is unreachable ({problem}); not falling back (--online)", file=sys.stderr)
                    return 1
                if problem:
                    print(f"PokeAPI is unreachable ({problem}): using the local stand-in (recorded data).")
                    offline = True
            if offline:
                with PokeApiStandin() as api:
                    runs = run_matrix(
                        backends,
                        dag_ids,
                        base_home=base_home,
                        store_env=store_env,
                        pokeapi_url=api.base_url,
                        workers=args.workers,
                    )
            else:
                runs = run_matrix(
                    backends,
                    dag_ids,
                    base_home=base_home,
                    store_env=store_env,
                    pokeapi_url=None,
                    workers=args.workers,
                )
    finally:
        servers.stop()
    print(render(runs))
    failed = [r for r in runs if not r.ok]
    for run in failed:
        print(f"\n--- {run.backend} / {run.dag_id}: {run.result.state} ---")
        print("\n".join(run.result.lines[-40:]))
    print(f"\n{len(runs) - len(failed)} of {len(runs)} runs succeeded.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
