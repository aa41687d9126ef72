"""Workers that share no disk: the CeleryExecutor with two workers (tools/celery_cluster.py).

`make airflow`'s control plane (tools/airflow_local.py: API server, scheduler, DAG processor,
triggerer, the local stores) on PostgreSQL and switched to Celery, Redis as the broker, and two Celery
workers each with its own HOME, TMPDIR, working directory, Airflow home and hostname. Between the
workers there is only the network: the Execution API and metadata DB (the reference) and the object
store (the bytes).

* A DataFrame pushed by a task on w1 is pulled, exactly, by a task on w2.
* A 200-way mapped task spread over both workers leaves 200 distinct objects with the right values,
  and each worker ran some of the 200.

About 5-9 minutes on two shared cores, so those two are not part of `make test`: `make test-celery`
runs them (and `.ci/run` does, as a step of its own). Under CI a missing PostgreSQL or Redis fails
them. The broker's own test takes seconds and runs in `make test`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest

from include.minio_xcom_backend_pandas import MinIOXComBackendPandas
from include.xcom_backend.reference import Reference
from include.xcom_backend.registry import open_store, row
from tests.conftest import stores_required
from tests.dags_for_tests.xcom_celery_pair import expected_frame
from tests.dags_for_tests.xcom_fanout import WIDTH, expected
from tests.support.dagruns import REPO_ROOT, TEST_DAGS
from tools.celery_cluster import WORKERS, CeleryCluster, hostname_of
from tools.servers import ServerNotInstalledError
from tools.servers.ports import HOST
from tools.servers.redis import RedisServer


def on_the_cluster(test: Callable[..., None]) -> Callable[..., None]:
    """Marks of the cluster tests: `make test-celery` only. Start-up (2-5 min on two busy cores)
    counts against the first test's time-out, the 200-way run against the second's."""
    for mark in (pytest.mark.stores, pytest.mark.celery, pytest.mark.timeout(1500)):
        test = mark(test)
    return test


BACKEND = f"{MinIOXComBackendPandas.__module__}.{MinIOXComBackendPandas.__qualname__}"
RUN_TIMEOUT = 900
# Every value to the store, so that the bucket holds one object per pushed value.
XCOM_SETTINGS = {"AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES": "0", "AIRFLOW__XCOM_BACKEND__KEY_PREFIX": "xcom"}
BUCKET = row("minio").default_bucket
#: What every component reads from the one checkout; the rest of their disk is their own.
SHARED_CODE = ("dags", "include", "plugins", "tests", "tools")


class _Row:
    """What Airflow hands ``deserialize_value``: an object with the DB column ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _show(config: pytest.Config, text: str) -> None:
    # Straight to the terminal, captured or not: the worker hostnames are what this test must show.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is None:
            print(text)
        else:
            reporter.write_line("")
            reporter.write_line(text)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[CeleryCluster]:
    cluster = CeleryCluster(
        tmp_path_factory.mktemp("celery-cluster"),
        dags_folder=TEST_DAGS,
        backend=BACKEND,
        expected_dags=("xcom_celery_pair", "xcom_fanout"),
        extra_env=XCOM_SETTINGS,
    )
    try:
        cluster.start()
    except ServerNotInstalledError as exc:
        # Only a missing server binary may skip, and only outside CI; a component that is installed
        # but fails to start is a failure.
        missing = exc
    else:
        missing = None
    if missing is not None:
        if stores_required():
            pytest.fail(
                f"{missing}\n(CI or XCOM_REQUIRE_STORES=1: PostgreSQL and Redis are required)", pytrace=False
            )
        pytest.skip(f"{missing.server} is not installed: {missing.reason}")
    timings = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in cluster.timings.items())
    _show(request.config, f"celery cluster started: {timings}")
    try:
        # This process reads the bucket with the same settings as the tasks.
        with mock.patch.dict(os.environ, {**cluster.stores.env(), **XCOM_SETTINGS}):
            yield cluster
    finally:
        began = time.monotonic()
        cluster.stop()
        _show(request.config, f"celery cluster stopped in {time.monotonic() - began:.1f} s")


def _written_into_shared_code(cluster: CeleryCluster) -> list[str]:
    """Files of the project's code changed since the cluster started: the workers must write none."""
    assert cluster.started_at is not None
    changed = []
    for top in SHARED_CODE:
        for folder, _, files in os.walk(REPO_ROOT / top):
            for name in files:
                path = Path(folder, name)
                if path.stat().st_mtime >= cluster.started_at:
                    changed.append(str(path.relative_to(REPO_ROOT)))
    return changed


def _run(cluster: CeleryCluster, dag_id: str) -> tuple[str, float]:
    began = time.monotonic()
    run_id = cluster.trigger(dag_id)
    state = cluster.wait(dag_id, run_id, timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - began
    if state != "success":
        logs = "\n".join(
            cluster.task_log(dag_id, run_id, ti.task_id, ti.map_index)[-3000:]
            for ti in cluster.task_instances(dag_id, run_id)
            if ti.state != "success"
        )
        pytest.fail(f"{dag_id} {run_id} ended {state}\n{logs[-12000:]}\n{cluster.diagnostics()}")
    return run_id, elapsed


@on_the_cluster
def test_dataframe_pushed_on_one_worker_is_pulled_exactly_on_the_other(
    cluster: CeleryCluster, request: pytest.FixtureRequest, reset_stores: Callable[[], None]
) -> None:
    run_id, elapsed = _run(cluster, "xcom_celery_pair")

    hosts = {ti.task_id: ti.hostname for ti in cluster.task_instances("xcom_celery_pair", run_id)}
    _show(
        request.config,
        f"xcom_celery_pair in {elapsed:.0f} s: "
        f"produce ran on {hosts['produce']}, consume on {hosts['consume']}",
    )
    assert hosts == {"produce": hostname_of(WORKERS[0]), "consume": hostname_of(WORKERS[1])}
    assert hosts["produce"] != hosts["consume"]
    consumed = cluster.task_log("xcom_celery_pair", run_id, "consume")
    assert f"PULLED exact frame (4, 6) pushed on {hosts['produce']} into {hosts['consume']}" in consumed
    # The consumer's log lives on w2's disk only, the producer's on w1's.
    assert str(cluster.worker_roots[WORKERS[1]]) in consumed
    assert str(cluster.worker_roots[WORKERS[0]]) in cluster.task_log("xcom_celery_pair", run_id, "produce")

    assert not _written_into_shared_code(cluster)

    # Independently of the consumer: the DB row is a reference, and the object it names is the frame.
    stored = cluster.xcom_values("xcom_celery_pair", run_id, "produce")[-1]
    reference = Reference.parse(stored)
    assert reference is not None and reference.bucket == BUCKET, stored
    assert reference.key.startswith(f"xcom/xcom_celery_pair/{run_id}/produce/-1/return_value/"), stored
    reset_stores()
    frame = MinIOXComBackendPandas.deserialize_value(_Row(stored))
    pd.testing.assert_frame_equal(frame, expected_frame(), check_exact=True)


@on_the_cluster
def test_200_mapped_tasks_spread_over_both_workers(
    cluster: CeleryCluster, request: pytest.FixtureRequest, reset_stores: Callable[[], None]
) -> None:
    run_id, elapsed = _run(cluster, "xcom_fanout")

    mapped = [ti for ti in cluster.task_instances("xcom_fanout", run_id) if ti.task_id == "fan_out"]
    per_host = Counter(ti.hostname for ti in mapped)
    _show(
        request.config, f"xcom_fanout ({WIDTH} mapped) in {elapsed:.0f} s: tasks per worker {dict(per_host)}"
    )
    assert len(mapped) == WIDTH and {ti.state for ti in mapped} == {"success"}
    assert set(per_host) == {hostname_of(name) for name in WORKERS}, per_host
    assert "COLLECTED 200 intact values" in cluster.task_log("xcom_fanout", run_id, "collect")

    reset_stores()
    objects = list(open_store("minio", BUCKET).list(f"xcom/xcom_fanout/{run_id}/fan_out/"))
    assert len({item.key for item in objects}) == len(objects) == WIDTH
    assert sorted(int(item.key.split("/")[4]) for item in objects) == list(range(WIDTH))

    assert not _written_into_shared_code(cluster)

    # Each object read back through the backend, outside Airflow, holds what its instance pushed.
    references = cluster.xcom_values("xcom_fanout", run_id, "fan_out")
    assert sorted(references) == list(range(WIDTH))
    wrong = [
        i
        for i, ref in references.items()
        if MinIOXComBackendPandas.deserialize_value(_Row(ref)) != expected(i)
    ]
    assert not wrong, f"objects with wrong values at map indexes {wrong[:20]}"


def test_redis_server_answers_only_with_its_password_and_stops_cleanly(tmp_path: Path) -> None:
    """The broker alone (seconds, part of `make test`): real PING, AUTH enforced, port free after stop."""
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
    except ServerNotInstalledError as exc:
        if stores_required():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(f"Redis is not installed: {exc.reason}")
    try:
        assert server.send("PING") == b"+PONG"
        with socket.create_connection((HOST, server.port), timeout=5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(100).startswith(b"-NOAUTH"), "a client without the password must be refused"
        assert f":{server.password}@" in server.url() and server.config_path.stat().st_mode & 0o077 == 0
    finally:
        server.stop()
    assert not server.is_running()
    with pytest.raises(OSError), socket.create_connection((HOST, server.port), timeout=2):
        pass
