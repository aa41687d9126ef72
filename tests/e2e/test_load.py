"""Many values at once, and values that cross machines.

* 200 mapped task instances push distinct values and one task pulls them all, in a real
  `airflow dags test` run (tests/dags_for_tests/xcom_fanout.py checks every value in the task).
* The same DAG under the LocalExecutor (separate worker processes that talk to an API server, with
  the ORM blocked as on a real worker): about 4 minutes on two shared cores, beyond this suite's
  time budget, so it runs only with XCOM_SLOW_TESTS=1.
* A producer and a consumer in different processes that share no disk: different HOME, TMPDIR,
  AIRFLOW_HOME and working directory, the producer's removed before the consumer starts, as two
  workers on two machines would be. Only the bucket and the reference connect them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from include.xcom_backend.reference import Reference
from include.xcom_backend.registry import TABLE, open_store
from tests.support.dagruns import REPO_ROOT, copy_airflow_home, dag_env, run_test_dag
from tests.support.schemes import SERVED, bucket_var

pytestmark = pytest.mark.stores

WIDTH = 200
PANDAS_BACKENDS = {scheme: TABLE[scheme].pandas_backend for scheme in SERVED}


@pytest.mark.e2e
@pytest.mark.slow
def test_200_mapped_pushes_give_200_distinct_objects_and_intact_values(
    airflow_db, local_stores, new_bucket, tmp_path, reset_stores
):
    bucket = new_bucket("minio")
    home = copy_airflow_home(airflow_db, tmp_path / "airflow-home")
    # The template's default backend (.env.example): MinIO API, pandas enabled.
    env = dag_env(home, local_stores, backend=PANDAS_BACKENDS["minio"], extra={bucket_var("minio"): bucket})
    result = run_test_dag("xcom_fanout", env, timeout=600)

    assert result.state == "success", result.output[-20000:]
    assert f"COLLECTED {WIDTH} intact values" in result.lines, result.output[-5000:]
    reset_stores()
    objects = list(open_store("minio", bucket).list("xcom/xcom_fanout/"))
    segments = [item.key.split("/") for item in objects]
    assert len({item.key for item in objects}) == len(objects) == WIDTH
    assert {parts[3] for parts in segments} == {"fan_out"}
    assert sorted(int(parts[4]) for parts in segments) == list(range(WIDTH)), "one object per map index"


@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get("XCOM_SLOW_TESTS") != "1", reason="~4 min; set XCOM_SLOW_TESTS=1")
def test_200_mapped_pushes_under_the_local_executor(
    airflow_db, local_stores, new_bucket, tmp_path, reset_stores
):
    bucket = new_bucket("s3")
    home = copy_airflow_home(airflow_db, tmp_path / "airflow-home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dag_env(
        home,
        local_stores,
        backend="include.s3_xcom_backend_json.S3XComBackendJSON",
        extra={
            bucket_var("s3"): bucket,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # shared by server and executor
        },
    )
    with (home / "api-server.log").open("w") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).read()
                break
            except OSError:
                assert api.poll() is None and time.monotonic() < deadline, (
                    home / "api-server.log"
                ).read_text()
                time.sleep(0.5)
        command = [sys.executable, "-m", "airflow", "dags", "test", "xcom_fanout", "--use-executor"]
        command += ["--dagfile-path", str(REPO_ROOT / "tests" / "dags_for_tests" / "xcom_fanout.py")]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200, check=False)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(api.pid, signal.SIGTERM)
        api.wait(60)
    output = result.stdout + result.stderr
    assert "Loaded executor: :LocalExecutor:" in output and "state=success" in output, output[-5000:]
    assert f"COLLECTED {WIDTH} intact values" in output
    reset_stores()
    assert len(list(open_store("s3", bucket).list("xcom/xcom_fanout/"))) == WIDTH


_PRODUCER = """
import json, sys
import importlib
import pandas as pd

frame = pd.DataFrame(
    {"n": pd.array([1, None, 3], dtype="Int64"), "when": pd.date_range("2026-01-01", periods=3, tz="UTC")}
)
stored = {}
for scheme, path in json.loads(sys.argv[1]).items():
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    ids = dict(key="return_value", task_id="producer", dag_id="cross_host", run_id="run_1", map_index=-1)
    small = {"rows": 3, "scheme": scheme}
    stored[scheme] = [cls.serialize_value(frame, **ids), cls.serialize_value(small, **ids)]
print("STORED " + json.dumps(stored))
"""

_CONSUMER = """
import json, os, sys
from collections import namedtuple
import importlib
import pandas as pd

Row = namedtuple("Row", "value")
expected = pd.DataFrame(
    {"n": pd.array([1, None, 3], dtype="Int64"), "when": pd.date_range("2026-01-01", periods=3, tz="UTC")}
)
stored = json.loads(sys.argv[2])
for scheme, path in json.loads(sys.argv[1]).items():
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    frame, small = (cls.deserialize_value(Row(value)) for value in stored[scheme])
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert small == {"rows": 3, "scheme": scheme}, small
print("PULLED " + json.dumps(sorted(stored)) + " in " + os.getcwd())
"""


def isolated_env(root: Path) -> dict[str, str]:
    """A process environment whose every local directory is under ``root`` and nowhere else."""
    for name in ("home", "tmp", "airflow", "cwd"):
        (root / name).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_HOME", "TMPDIR", "HOME")}
    return env | {
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow' / 'airflow.db'}",
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW__XCOM_BACKEND__KEY_PREFIX": "xcom",
        "AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES": "0",
    }


def test_producer_and_consumer_share_nothing_but_the_bucket(local_stores, tmp_path):
    backends = json.dumps(PANDAS_BACKENDS)
    producer_root, consumer_root = tmp_path / "producer-host", tmp_path / "consumer-host"
    produced = subprocess.run(
        [sys.executable, "-c", _PRODUCER, backends],
        env=isolated_env(producer_root),
        cwd=producer_root / "cwd",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in produced.stdout.splitlines() if line.startswith("STORED ")]
    assert produced.returncode == 0 and lines, produced.stderr[-4000:]
    stored = json.loads(lines[-1][7:])
    shutil.rmtree(producer_root)  # whatever the producer left on its disk is gone

    for scheme, values in stored.items():
        for value in values:
            reference = Reference.parse(value)
            assert reference is not None and reference.key.startswith("xcom/cross_host/"), (scheme, value)

    consumed = subprocess.run(
        [sys.executable, "-c", _CONSUMER, backends, json.dumps(stored)],
        env=isolated_env(consumer_root),
        cwd=consumer_root / "cwd",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert consumed.returncode == 0, consumed.stderr[-4000:]
    assert f"PULLED {json.dumps(sorted(PANDAS_BACKENDS))} in {consumer_root / 'cwd'}" in consumed.stdout
