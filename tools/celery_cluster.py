"""Airflow with the CeleryExecutor and two workers that share no disk, all on this machine.

What users run when they outgrow one machine, reproduced with plain processes:

* PostgreSQL (tools/servers/postgres.py): the metadata DB and Celery's result backend, a network service
  every machine reaches;
* Redis (tools/servers/redis.py): the Celery broker;
* the control plane of `make airflow` (tools/airflow_local.py: the local stores, API server, which is
  also the workers' Execution API, scheduler, DAG processor and triggerer), switched to Celery;
* two Celery workers, each with its own HOME, TMPDIR, working directory and Airflow home (its task
  logs), its own hostname as Airflow records it, and its own queue besides the shared ``default``.

The workers share with the rest only the project's code (read, never written: no process writes
bytecode), the network services above and the object stores. A value pushed on one worker reaches
the other only as a reference through the Execution API and the metadata DB, and as bytes through
the store.

    with CeleryCluster(tmp_path / "cluster", dags_folder=...) as cluster:
        run_id = cluster.trigger("xcom_celery_pair")
        assert cluster.wait("xcom_celery_pair", run_id, timeout=600) == "success"

Every wait is bounded; ``stop()`` ends the workers, then the control plane and the stores, then the
servers (SIGTERM, then SIGKILL), and runs at interpreter exit too (the supervisor's handlers).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from tools.airflow_local import DEFAULT_BACKEND, LocalAirflow
from tools.servers import LocalServers, Server, ServerStartError
from tools.servers.postgres import SQL_ALCHEMY_CONN, PostgresServer
from tools.servers.redis import RedisServer

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


class CeleryWorker(Server):
    """``airflow celery worker`` with an environment of its own (nothing inherited from this process)."""

    label: ClassVar[str] = "worker"

    def __init__(self, worker: str, data_dir: Path, env: dict[str, str], concurrency: int) -> None:
        super().__init__(data_dir, startup_timeout=600.0)
        self.worker = worker
        self.celery_hostname = f"{worker}@{hostname_of(worker)}"
        self.env = env
        self.concurrency = concurrency

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "airflow",
            "celery",
            "worker",
            "--celery-hostname",
            self.celery_hostname,
            "--queues",
            f"{self.worker},{SHARED_QUEUE}",
            "--concurrency",
            str(self.concurrency),
            # Logs stay on the worker's disk; two log servers would also fight over one port here.
            "--skip-serve-logs",
        ]

    def environment(self) -> dict[str, str | None]:
        inherited: dict[str, str | None] = dict.fromkeys(os.environ)
        return inherited | self.env

    def ready(self) -> None:
        if f"{self.celery_hostname} ready." not in self.log_text():
            raise LookupError(f"{self.label} has not logged `ready.` yet")


def celery_worker(worker: str, data_dir: Path, env: dict[str, str], concurrency: int) -> CeleryWorker:
    """The server of one worker, under a class of its own: a server's label is a class attribute, and
    messages must say which worker failed."""

    class NamedWorker(CeleryWorker):
        label = f"worker {worker}"

    return NamedWorker(worker, data_dir, env, concurrency)


@dataclass(frozen=True)
class TaskInstanceRow:
    task_id: str
    map_index: int
    state: str | None
    hostname: str
    queue: str


class CeleryCluster:
    """PostgreSQL, Redis, `make airflow`'s control plane on Celery, and two isolated workers.

    :param base_dir: everything local goes below it: one directory per worker "machine", one for the
        control plane (and the stores), one per server.
    :param dags_folder: the DAG files every component reads (the project's code, shared read-only).
    :param backend: ``AIRFLOW__CORE__XCOM_BACKEND`` of every process.
    :param extra_env: further variables for every Airflow process (e.g. XCom backend settings).
    :param concurrency: task slots per worker.
    :param expected_dags: ``start()`` returns once the DAG processor has stored these.
    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        dags_folder: Path,
        backend: str = DEFAULT_BACKEND,
        extra_env: dict[str, str] | None = None,
        concurrency: int = 4,
        expected_dags: tuple[str, ...] = (),
        startup_timeout: float = 600.0,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.backend = backend
        self.extra_env = dict(extra_env or {})
        self.concurrency = concurrency
        self.expected_dags = expected_dags
        self.startup_timeout = startup_timeout
        self.postgres = PostgresServer(self.base_dir / "postgres")
        self.redis = RedisServer(self.base_dir / "redis")
        self.worker_roots = {name: self.base_dir / name for name in WORKERS}
        self.airflow: LocalAirflow | None = None
        self.workers: list[CeleryWorker] = []
        self.timings: dict[str, float] = {}
        #: wall-clock time (``time.time()``) at which ``start()`` began
        self.started_at: float | None = None

    @property
    def stores(self) -> LocalServers:
        """The object stores the control plane started (their ``env()`` reaches every process)."""
        assert self.airflow is not None and self.airflow.stores is not None, "the cluster is not started"
        return self.airflow.stores

    # -- environments ------------------------------------------------------------------------------

    def _celery_env(self) -> dict[str, str]:
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(2 * self.concurrency * len(WORKERS)),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url(),
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.postgres.url()}",
            # The project's code is shared read-only: no process writes bytecode next to it.
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.extra_env,
        }

    def worker_env(self, worker: str) -> dict[str, str]:
        """The control plane's environment, less the metadata DB (Airflow 3 workers reach it only
        through the API server), with this worker's own disk and hostname."""
        assert self.airflow is not None
        root = self.worker_roots[worker]
        for sub in ("home", "tmp", "airflow", "cwd"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        dropped = (SQL_ALCHEMY_CONN, "PWD", "OLDPWD")
        env = {k: v for k, v in self.airflow.env.items() if k not in dropped}
        return env | {
            "HOME": str(root / "home"),
            "TMPDIR": str(root / "tmp"),
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            HOSTNAME_VAR: hostname_of(worker),
        }

    def control_env(self) -> dict[str, str]:
        """Environment of the control plane, for CLI calls such as ``airflow dags trigger``."""
        assert self.airflow is not None
        return dict(self.airflow.env)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start everything; on any failure stop what started and raise."""
        self.started_at = time.time()
        try:
            self._timed("postgres+redis", self._start_servers)
            self.airflow = LocalAirflow(
                home=self.base_dir / "control",
                backend=self.backend,
                sql_alchemy_conn=self.postgres.url(),
                extra_env=self._celery_env(),
                startup_timeout=self.startup_timeout,
            )
            self._timed(
                "control plane (stores, migrate, 4 processes)", lambda: self.airflow.start(log=_quiet)
            )
            self._timed("DAGs parsed", self._wait_for_dags)
            self.workers = [
                celery_worker(name, self.worker_roots[name] / "cwd", self.worker_env(name), self.concurrency)
                for name in WORKERS
            ]
            self._timed("workers", self._start_workers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Workers first (they take nothing new), then the control plane and stores, then the servers."""
        if self.workers:
            with ThreadPoolExecutor(len(self.workers)) as pool:
                list(pool.map(lambda worker: worker.stop(30.0), self.workers))
        if self.airflow is not None:
            self.airflow.stop()
        self.redis.stop()
        self.postgres.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _timed(self, label: str, step: Callable[[], object]) -> None:
        began = time.monotonic()
        step()
        self.timings[label] = time.monotonic() - began

    def _start_servers(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(server.start) for server in (self.postgres, self.redis)]
        for future in futures:
            future.result()

    def _start_workers(self) -> None:
        with ThreadPoolExecutor(len(self.workers)) as pool:
            futures = [pool.submit(worker.start) for worker in self.workers]
        for future in futures:
            future.result()

    def _wait_for_dags(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while missing := set(self.expected_dags) - set(self.query("SELECT dag_id FROM serialized_dag", ())):
            if time.monotonic() > deadline:
                raise ServerStartError(
                    "DAG processor", f"{sorted(missing)} not parsed after {self.startup_timeout:.0f} s"
                )
            time.sleep(1.0)

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
        ``timeout`` seconds, or ``RuntimeError`` at once if a process died."""
        assert self.airflow is not None
        deadline = time.monotonic() + timeout
        while True:
            query = "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s"
            states = self.query(query, (dag_id, run_id))
            if states and states[0] in _TERMINAL_RUN_STATES:
                return states[0]
            dead = [w.label for w in self.workers if not w.is_running()]
            dead += [f"airflow {p.name}" for p in self.airflow.dead()]
            dead += [s.label for s in (self.postgres, self.redis) if not s.is_running()]
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
        """The last lines of every process's log, for a failure message."""
        parts = [f"--- {w.label} ({w.log_path})\n{w.log_tail(lines)}" for w in self.workers]
        if self.airflow is not None:
            parts += [f"--- airflow {p.name} ({p.log_path})\n{p.tail(lines)}" for p in self.airflow.processes]
        parts += [f"--- {s.label} ({s.log_path})\n{s.log_tail(lines)}" for s in (self.postgres, self.redis)]
        return "\n".join(parts)


def _quiet(line: str) -> None:
    """``LocalAirflow.start``'s progress lines: kept out of test output (the timings say it all)."""
