"""Run this project's DAGs for real with `airflow dags test`, in an isolated Airflow home.

Each call starts a fresh `airflow` process, as a user's `airflow dags test` (or `astro dev run dags
test`) would, so what a test sees is what a user sees: the configured XCom backend, connections
from environment variables, DAG params validated against the conf.

    env = airflow_env(tmp_path, xcom_backend="include.minio_xcom_backend_pandas.MinIOXComBackendPandas",
                      connections={"pokeapi_default": {"conn_type": "http", "host": api.base_url}})
    migrate_db(env)
    result = run_dag_test("fetch_pokemon_data_dag", env, conf={"favorite_pokemon": "snorlax"})
    assert result.state == "success", result.output
    assert "pikachu has a base xp to height ratio of 28.0" in result.lines

In Airflow 3.3, `airflow dags test` runs the tasks one after another inside its own process (with an
in-process Execution API) and writes everything, Airflow's log lines and whatever the tasks print,
to stdout; it writes no task log files. `result.output` holds all of it (stderr merged in), and a
task's `print()` shows up as a line of its own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# What Airflow logs when the run ends; more reliable than the exit status, which is 1 for any error.
_FINISHED = re.compile(r"DagRun Finished: dag_id=(?P<dag_id>[^,]+),.*?\bstate=(?P<state>\w+)")


@dataclass(frozen=True)
class DagTestResult:
    """The outcome of one `airflow dags test` process."""

    dag_id: str
    state: str | None
    """The run's final state as Airflow logged it ("success", "failed"), or None if no run finished
    (the DAG did not parse, the conf was rejected, the process crashed or timed out)."""
    returncode: int | None
    """The process's exit status; None when it was killed after `timeout`."""
    output: str
    """Everything the process wrote, stdout and stderr interleaved."""
    duration: float
    """Wall time of the whole process in seconds, interpreter start-up included."""
    command: tuple[str, ...]

    @property
    def lines(self) -> list[str]:
        """The output split into lines, for exact matches on what a task printed."""
        return self.output.splitlines()

    @property
    def succeeded(self) -> bool:
        return self.state == "success" and self.returncode == 0


def airflow_env(
    airflow_home: Path,
    *,
    xcom_backend: str | None = None,
    connections: Mapping[str, str | Mapping[str, Any]] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for an `airflow` process that uses only ``airflow_home`` and this project's code.

    Only what is passed here reaches the process: every variable starting with ``AIRFLOW`` in
    ``os.environ`` is dropped, including ``AIRFLOW_CONN_*`` set by test fixtures; pass those (e.g.
    ``local_stores.env()``) as ``extra``.

    :param airflow_home: directory for airflow.cfg and the SQLite metadata DB (created if missing).
    :param xcom_backend: import path for ``AIRFLOW__CORE__XCOM_BACKEND``; None keeps Airflow's default
        (the metadata DB, through Airflow's own serializer).
    :param connections: connection id -> URI string or dict (sent as JSON), as
        ``AIRFLOW_CONN_<ID>`` variables.
    :param extra: further variables, set last (e.g. a backend's bucket name or an emulator host).
    """
    airflow_home.mkdir(parents=True, exist_ok=True)
    # Airflow settings from the developer's shell (or the Makefile's .airflow home) must not leak in:
    # a stray AIRFLOW__CORE__XCOM_BACKEND would silently change what a test exercises.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The Astro image puts the project root on sys.path, which makes `include.*` importable.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    if xcom_backend is not None:
        env["AIRFLOW__CORE__XCOM_BACKEND"] = xcom_backend
    for conn_id, conn in (connections or {}).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn if isinstance(conn, str) else json.dumps(conn)
    env.update(extra or {})
    return env


def migrate_db(env: Mapping[str, str], *, timeout: float = 300) -> float:
    """Create or upgrade the metadata DB of ``env``'s Airflow home; return the wall time in seconds.

    Raises ``subprocess.CalledProcessError`` (with the output) if the migration fails.
    """
    started = time.monotonic()
    run_module(env, "airflow", "db", "migrate", timeout=timeout)
    return time.monotonic() - started


def run_module(env: Mapping[str, str], module: str, *args: str, timeout: float = 300) -> None:
    """`python -m module args` in the project with ``env``; raises ``CalledProcessError`` (with the
    output) if it fails."""
    subprocess.run(
        (sys.executable, "-m", module, *args),
        env=dict(env),
        cwd=PROJECT_ROOT,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def run_dag_test(
    dag_id: str,
    env: Mapping[str, str],
    *,
    conf: Mapping[str, Any] | None = None,
    dag_file: Path | None = None,
    timeout: float = 300,
) -> DagTestResult:
    """Run ``airflow dags test <dag_id>`` once and return its state and output.

    Never raises for a failed run: check ``result.state`` (and print ``result.output`` on failure).

    :param env: from :func:`airflow_env`, after :func:`migrate_db` on the same Airflow home.
    :param conf: the run's conf (``-c``), validated against the DAG's params like a UI trigger.
    :param dag_file: parse only this file instead of the whole dags folder (faster, and immune to
        import errors elsewhere in the folder).
    :param timeout: seconds before the process and its children are killed (state None).
    """
    command = _airflow("dags", "test", dag_id)
    if conf is not None:
        command += ("--conf", json.dumps(conf))
    if dag_file is not None:
        command += ("--dagfile-path", str(dag_file))

    started = time.monotonic()
    # A session of its own, so that a timeout can stop the task processes too, not just the CLI.
    with subprocess.Popen(
        command,
        env=dict(env),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
            returncode: int | None = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            output += f"\n[tools.dagrun] killed after {timeout:.0f}s\n"
            returncode = None
    duration = time.monotonic() - started

    state = None
    for match in _FINISHED.finditer(output):
        if match["dag_id"] == dag_id:
            state = match["state"]
    return DagTestResult(dag_id, state, returncode, output, duration, command)


def _airflow(*args: str) -> tuple[str, ...]:
    # The interpreter running this code, so the venv's Airflow runs whatever PATH says.
    return (sys.executable, "-m", "airflow", *args)
