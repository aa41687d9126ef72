"""Airflow with the CeleryExecutor and two workers that share no disk, all on this machine.

What users run when they outgrow one machine, reproduced with plain processes:

* PostgreSQL: the metadata DB and Celery's result backend (a network service every machine reaches);
* Redis: the Celery broker;
* one "control plane": API server (which is also the workers' Execution API), scheduler and DAG
  processor, sharing one Airflow home;
* two Celery workers, each with its own HOME, TMPDIR, working directory and Airflow home (task logs),
  its own hostname as Airflow records it, and its own queue besides the shared ``default`` one.

The workers share with the rest only the project's code (read, never written: no bytecode files),
the network services above and the object stores. A value pushed on one worker reaches the other
only as a reference through the Execution API and the metadata DB, and as bytes through the store.

    with CeleryCluster(tmp_path / "cluster", dags_folder=..., extra_env=stores.env()) as cluster:
        run_id = cluster.trigger("xcom_celery_pair")
        assert cluster.wait(run_id, "xcom_celery_pair") == "success"

Components start one after another with bounded waits, and ``stop()`` ends them in reverse order
(SIGTERM, then SIGKILL), also at interpreter exit; see ``tools.local_stores.LocalServer``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tools.local_stores import HOST, PROJECT_ROOT, LocalServer, StoreStartError
from tools.postgres import PostgresServer
from tools.redis_server import RedisServer

#: The two workers; each listens on the queue of its own name and on the shared ``default`` queue.
WORKERS = ("w1", "w2")
SHARED_QUEUE = "default"
#: Read by :func:`worker_hostname` in each worker's processes.
HOSTNAME_VAR = "XCOM_CELERY_WORKER_HOSTNAME"

_TERMINAL_RUN_STATES = ("success", "failed")


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` on the workers: the simulated machine's name.

    Both workers run on this one machine, so ``socket.getfqdn()`` would name the same host twice; a
    real second machine has a name of its own, and this gives each worker one.
    """
    return os.environ.get(HOSTNAME_VAR) or socket.getfqdn()


def hostname_of(worker: str) -> str:
    """The hostname Airflow records for task instances that ran on ``worker`` (e.g. ``w1-myhost``)."""
    return f"{worker}-{socket.gethostname()}"


class AirflowProcess(LocalServer):
    """One long-running ``airflow`` command with an environment of its own (nothing inherited)."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        args: Callable[[int], list[str]],
        env: Callable[[int], dict[str, str]],
        probe: Callable[[AirflowProcess], None],
        *,
        startup_timeout: float = 300.0,
    ) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.name = name  # type: ignore[misc]
        self._args = args
        self._env = env
        self._probe_fn = probe

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "airflow", *self._args(self.port)]

    def _env_drop(self) -> tuple[str, ...]:
        return tuple(os.environ)

    def _extra_env(self) -> dict[str, str]:
        return self._env(self.port)

    def _probe(self) -> None:
        self._probe_fn(self)


@dataclass(frozen=True)
class TaskInstanceRow:
    task_id: str
    map_index: int
    state: str | None
    hostname: str
    queue: str


def _http_ok(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        if response.status != 200:
            raise ConnectionError(f"{url} answered {response.status}")


class CeleryCluster:
    """PostgreSQL, Redis, API server, scheduler, DAG processor and two isolated Celery workers.

    :param base_dir: everything local goes below it: one directory per worker "machine", one for the
        control plane, one per server.
    :param dags_folder: the DAG files every component reads (the project's code, shared read-only).
    :param extra_env: variables every Airflow process gets (store connections, XCom backend settings).
    :param concurrency: task slots per worker.
    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        dags_folder: Path,
        extra_env: Mapping[str, str] | None = None,
        concurrency: int = 4,
        expected_dags: tuple[str, ...] = (),
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.extra_env = dict(extra_env or {})
        self.concurrency = concurrency
        self.expected_dags = expected_dags
        self.jwt_secret = secrets.token_urlsafe(64)  # HS512 wants at least 64 bytes
        self.postgres = PostgresServer(self.base_dir / "postgres")
        self.redis = RedisServer(self.base_dir / "redis")
        self.control_root = self.base_dir / "control"
        self.worker_roots = {name: self.base_dir / name for name in WORKERS}
        self.api_server: AirflowProcess | None = None
        self.processes: list[LocalServer] = []
        self.timings: dict[str, float] = {}
        #: wall-clock time (``time.time()``) at which ``start()`` began
        self.started_at: float | None = None

    # -- environments ------------------------------------------------------------------------------

    def _base_env(self, root: Path) -> dict[str, str]:
        """What an Airflow process on the "machine" ``root`` sees: nothing of this process's Airflow
        settings, HOME or TMPDIR, and only ``root`` as local disk."""
        for sub in ("home", "tmp", "airflow"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        dropped = ("HOME", "TMPDIR", "PWD", "OLDPWD", "PYTHONPATH")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in dropped}
        env |= {
            "HOME": str(root / "home"),
            "TMPDIR": str(root / "tmp"),
            "AIRFLOW_HOME": str(root / "airflow"),
            "PYTHONPATH": str(PROJECT_ROOT),
            # The project's code is shared read-only: no process writes bytecode next to it.
            "PYTHONDONTWRITEBYTECODE": "1",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url(),
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.postgres.url()}",
        }
        if self.api_server is not None:
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{self.api_server.endpoint}/execution/"
        return env | self.extra_env

    def control_env(self) -> dict[str, str]:
        """Environment of the control plane (and of CLI calls such as ``airflow dags trigger``)."""
        return self._base_env(self.control_root) | {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url(),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }

    def worker_env(self, worker: str) -> dict[str, str]:
        """A worker's environment: no metadata DB (Airflow 3 workers reach it only through the API
        server) and a hostname of its own."""
        return self._base_env(self.worker_roots[worker]) | {
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            HOSTNAME_VAR: hostname_of(worker),
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start everything; on any failure stop what started and raise ``StoreStartError``."""
        self.started_at = time.time()
        try:
            self._timed("postgres+redis", self._start_servers)
            self._timed("db migrate", self._migrate)
            self.api_server = self._component(
                "api-server",
                self.control_root / "api-server",
                lambda port: ["api-server", "--host", HOST, "--port", str(port)],
                lambda port: self.control_env(),
                lambda proc: _http_ok(f"{proc.endpoint}/api/v2/monitor/health"),
            )
            self._timed("api-server", self.api_server.start)
            scheduler = self._component(
                "scheduler",
                self.control_root / "scheduler",
                lambda port: ["scheduler"],
                lambda port: (
                    self.control_env()
                    | {
                        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": HOST,
                        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(port),
                    }
                ),
                lambda proc: _http_ok(f"{proc.endpoint}/health"),
            )
            processor = self._component(
                "dag-processor",
                self.control_root / "dag-processor",
                lambda port: ["dag-processor"],
                lambda port: self.control_env(),
                lambda proc: self._dags_parsed(),
            )
            workers = [
                self._component(
                    f"worker {name}",
                    self.worker_roots[name] / "cwd",
                    lambda port, name=name: [
                        "celery",
                        "worker",
                        "--celery-hostname",
                        f"{name}@{hostname_of(name)}",
                        "--queues",
                        f"{name},{SHARED_QUEUE}",
                        "--concurrency",
                        str(self.concurrency),
                        "--skip-serve-logs",
                    ],
                    lambda port, name=name: self.worker_env(name),
                    lambda proc, name=name: self._worker_ready(proc, name),
                )
                for name in WORKERS
            ]
            for proc in (scheduler, processor, *workers):
                self._timed(proc.name, proc.start)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Workers first (they finish nothing new), then the control plane, then the servers."""
        for proc in reversed(self.processes):
            proc.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _timed(self, label: str, step: Callable[[], object]) -> None:
        began = time.monotonic()
        step()
        self.timings[label] = time.monotonic() - began

    def _start_servers(self) -> None:
        self.processes.extend([self.postgres, self.redis])
        self.postgres.start()
        self.redis.start()

    def _migrate(self) -> None:
        env = self.control_env()
        self.control_root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            cwd=self.control_root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise StoreStartError(
                "airflow db migrate", f"exited {result.returncode}", result.stdout + result.stderr
            )

    def _component(self, name: str, data_dir: Path, *args: Any) -> AirflowProcess:
        proc = AirflowProcess(name, data_dir, *args)
        self.processes.append(proc)
        return proc

    def _dags_parsed(self) -> None:
        missing = set(self.expected_dags) - set(self.query("SELECT dag_id FROM serialized_dag", ()))
        if missing:
            raise LookupError(f"not parsed yet: {sorted(missing)}")

    @staticmethod
    def _worker_ready(proc: AirflowProcess, name: str) -> None:
        if f"{name}@{hostname_of(name)} ready." not in proc.log_text():
            raise LookupError(f"{proc.name} has not logged `ready.` yet")

    # -- using it ----------------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run one read query on the metadata DB; single-column rows come back as plain values."""
        with self.postgres.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        return [row[0] if len(row) == 1 else row for row in rows]

    def trigger(self, dag_id: str, run_id: str | None = None) -> str:
        """Create a DAG run the way a user would from the CLI; the scheduler takes it from there."""
        run_id = run_id or f"celery__{int(time.time() * 1000)}"
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "trigger", dag_id, "--run-id", run_id],
            env=self.control_env(),
            cwd=self.control_root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`airflow dags trigger {dag_id}` exited {result.returncode}:\n{result.stderr[-4000:]}"
            )
        return run_id

    def wait(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the run succeeds or fails and return its state; raise ``TimeoutError`` after
        ``timeout`` seconds, or ``RuntimeError`` at once if a component died."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.query(
                "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
            )
            if states and states[0] in _TERMINAL_RUN_STATES:
                return states[0]
            dead = [proc.name for proc in self.processes if not proc.is_running()]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited during the run\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id} {run_id} still {states} after {timeout:.0f} s\n{self.diagnostics()}"
                )
            time.sleep(1.0)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceRow]:
        rows = self.query(
            "SELECT task_id, map_index, state, coalesce(hostname, ''), queue FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
        return [TaskInstanceRow(*row) for row in rows]

    def xcom_values(self, dag_id: str, run_id: str, task_id: str) -> dict[int, Any]:
        """map_index -> the XCom ``return_value`` as stored in the metadata DB (a reference here)."""
        rows = self.query(
            "SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
            "AND key = 'return_value'",
            (dag_id, run_id, task_id),
        )
        return dict(rows)

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """The task's log, read from whichever worker's disk it ran on ('' if none has it)."""
        suffix = "" if map_index < 0 else f"/map_index={map_index}"
        pattern = f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}{suffix}/attempt=*.log"
        texts = []
        for root in self.worker_roots.values():
            for path in sorted((root / "airflow" / "logs").glob(pattern)):
                texts.append(f"--- {path}\n{path.read_text(errors='replace')}")
        return "\n".join(texts)

    def diagnostics(self, lines: int = 15) -> str:
        """The last lines of every component's log, for a failure message."""
        return "\n".join(
            f"--- {proc.name} ({proc.log_path})\n{proc.log_tail(lines)}" for proc in self.processes
        )
