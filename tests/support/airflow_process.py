"""`make airflow` (tools/airflow_local.py) in a child process, for the tests that need a running Airflow.

The child gets a marker variable in its environment, which every process it starts inherits; after it
stops, `survivors(marker)` finds any of them still alive, wherever it was reparented.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.airflow_settings import api_client
from tools.dagrun import PROJECT_ROOT

MARKER_VAR = "XCOM_TESTS_LOCAL_AIRFLOW"
_UI_LINE = re.compile(r"^Airflow UI: (http://127\.0\.0\.1:\d+)$")
TERMINAL_STATES = {"success", "failed"}


@dataclass
class RunningAirflow:
    process: subprocess.Popen[str]
    marker: str
    home: Path
    url: str = ""
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        # Generous: a busy SQLite can hold a request up for a while; the tests' deadlines decide.
        with api_client(self.url, timeout=90) as client:
            yield client


def survivors(marker: str) -> list[str]:
    """`pid command` of every live process whose environment carries ``marker``."""
    found = []
    needle = f"{MARKER_VAR}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{entry.name} {command.strip()}")
    return found


def spawn_airflow(home: Path, *args: str) -> RunningAirflow:
    """Start the tool (PokeAPI from the stand-in); its output collects in ``lines`` as it comes."""
    marker = secrets.token_hex(8)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.airflow_local", "--offline", "--home", str(home), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, MARKER_VAR: marker},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = RunningAirflow(process, marker, home)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.lines.append(line.rstrip("\n"))
            if match := _UI_LINE.match(run.lines[-1]):
                run.url = match.group(1)
                run.ready.set()
        run.ready.set()
        run.ended.set()

    threading.Thread(target=read, daemon=True).start()
    return run


def start_airflow(home: Path, *args: str, timeout: float = 480) -> RunningAirflow:
    """Start the tool and return once it printed the UI's address; raise with its output otherwise."""
    run = spawn_airflow(home, *args)
    if not run.ready.wait(timeout) or not run.url:
        kill(run)
        raise AssertionError(
            f"make airflow printed no UI address within {timeout:.0f} s:\n{run.output[-8000:]}"
        )
    return run


def stop_airflow(run: RunningAirflow, timeout: float = 120) -> int:
    """Ctrl-C, as a user would; returns the exit status (raises if it has not ended in ``timeout``)."""
    run.process.send_signal(signal.SIGINT)
    code = run.process.wait(timeout)
    run.ended.wait(10)  # the reader has seen the end of the output
    return code


def kill(run: RunningAirflow) -> None:
    """Last resort after a failed test: SIGKILL the tool's group and anything carrying its marker."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.process.pid, signal.SIGKILL)
    run.process.wait(30)
    for line in survivors(run.marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def wait_for_dag(client: httpx.Client, dag_id: str, timeout: float = 180) -> dict:
    """The DAG as the API serves it, once the DAG processor has parsed it."""
    deadline = time.monotonic() + timeout
    while True:
        answer = poll_get(client, f"/api/v2/dags/{dag_id}")
        if answer is not None and answer.status_code == 200:
            return answer.json()
        last = answer.text if answer is not None else "no answer in time"
        assert time.monotonic() < deadline, f"{dag_id} not parsed after {timeout:.0f} s: {last}"
        time.sleep(2)


def wait_for_run(client: httpx.Client, dag_id: str, run_id: str, timeout: float = 300) -> str:
    """The run's final state; fails the test if it is not final within ``timeout``."""
    deadline = time.monotonic() + timeout
    state = None
    while True:
        if (answer := poll_get(client, f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")) is not None:
            state = answer.raise_for_status().json()["state"]
            if state in TERMINAL_STATES:
                return state
        assert time.monotonic() < deadline, f"{dag_id} run {run_id} still {state} after {timeout:.0f} s"
        time.sleep(2)


def poll_get(client: httpx.Client, path: str) -> httpx.Response | None:
    # One slow answer is not the outcome being waited for (on two shared cores the API server can
    # take longer than the client's timeout while SQLite is busy): the caller's deadline decides.
    try:
        return client.get(path)
    except httpx.TimeoutException:
        return None
