"""The backend's metrics, as an operator's StatsD server receives them: a UDP listener on 127.0.0.1
gets what a real `airflow dags test` sends with AIRFLOW__METRICS__STATSD_ON=True, and what a failing
pull sends, counted by kind. docs/operating.md's table of names is checked against metrics.METRICS."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.xcom_backend import XComIntegrityError, XComObjectNotFound
from include.xcom_backend.metrics import METRICS, PREFIX
from include.xcom_backend.reference import Reference
from include.xcom_backend.registry import open_store
from tests.support.dagruns import REPO_ROOT, copy_airflow_home, dag_env, run_test_dag, xcom_rows
from tests.support.schemes import bucket_var, json_backend
from tests.support.xcom_calls import backend_for, pull, push

LINE = re.compile(r"^(?P<name>[^:]+):(?P<value>-?[0-9.]+)\|(?P<type>c|ms|g)")


class StatsdListener:
    """A StatsD server's socket: every datagram received, split into metric lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode("utf-8", "replace").splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def values(self, name: str, kind: str) -> list[float]:
        """The values received for ``name`` of StatsD type ``kind`` (c, ms)."""
        found = []
        for line in list(self.lines):
            match = LINE.match(line)
            if match and match["name"] == name and match["type"] == kind:
                found.append(float(match["value"]))
        return found


@pytest.fixture
def listener() -> Iterator[StatsdListener]:
    # Not in the Astro image's requirements.txt: there these tests skip, the table check still runs.
    pytest.importorskip("statsd", reason="Airflow's StatsD logger needs the statsd package")
    server = StatsdListener()
    yield server
    server.close()


def _statsd_env(port: int) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }


def _wait_for(listener: StatsdListener, name: str, kind: str, timeout: float = 10.0) -> list[float]:
    # Datagrams already sent may still be in the socket's buffer when the run ends.
    deadline = time.monotonic() + timeout
    while not listener.values(name, kind) and time.monotonic() < deadline:
        time.sleep(0.1)
    return listener.values(name, kind)


@pytest.mark.e2e
@pytest.mark.stores
def test_a_dag_run_sends_push_and_pull_counts_bytes_and_durations(
    airflow_db, local_stores, new_bucket, listener, tmp_path
):
    bucket = new_bucket("s3")
    home = copy_airflow_home(airflow_db, tmp_path / "airflow-home")
    extra = {bucket_var("s3"): bucket, **_statsd_env(listener.port)}
    env = dag_env(home, local_stores, backend=json_backend("s3"), extra=extra)
    result = run_test_dag("xcom_pair", env)
    assert result.state == "success", result.output[-4000:]

    [row] = [r for r in xcom_rows(env, "xcom_pair") if r["task_id"] == "produce"]
    reference = Reference.parse(row["value"])
    assert reference is not None, row
    size = len(open_store("s3", bucket).get(reference.key))

    name = f"airflow.{PREFIX}.s3"
    assert _wait_for(listener, f"{name}.push", "c") == [1.0], listener.lines
    assert listener.values(f"{name}.push_bytes", "c") == [float(size)]
    assert _wait_for(listener, f"{name}.pull", "c") == [1.0], listener.lines
    assert listener.values(f"{name}.pull_bytes", "c") == [float(size)]
    for operation in ("push", "pull"):
        [duration] = listener.values(f"{name}.{operation}_duration", "ms")
        assert 0 < duration < 60_000
    assert not [line for line in listener.lines if f"{PREFIX}.s3.error." in line], listener.lines


@pytest.fixture
def statsd_in_process(listener: StatsdListener, monkeypatch: pytest.MonkeyPatch) -> StatsdListener:
    """Airflow's Stats in this process sending to the listener, as the task runner sets it up."""
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk.observability.metrics import stats_utils

    for name, value in _statsd_env(listener.port).items():
        monkeypatch.setenv(name, value)
    for attribute in ("_factory", "_backend", "_export_legacy_names"):
        monkeypatch.setattr(stats, attribute, getattr(stats, attribute))  # restored afterwards
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    return listener


@pytest.mark.usefixtures("xcom_table")
def test_failed_pulls_are_counted_by_kind(statsd_in_process: StatsdListener):
    cls = backend_for("memory")
    gone, changed = push(cls, ["a value"]), push(cls, ["another"])
    store = open_store("memory")
    store.delete(Reference.parse(gone).key)
    store.put(Reference.parse(changed).key, b'["tampered"]', content_type="application/json", metadata={})
    with pytest.raises(XComObjectNotFound):
        pull(cls, gone)
    with pytest.raises(XComIntegrityError):
        pull(cls, changed)

    name = f"airflow.{PREFIX}.memory"
    assert _wait_for(statsd_in_process, f"{name}.error.not_found", "c") == [1.0], statsd_in_process.lines
    assert _wait_for(statsd_in_process, f"{name}.error.integrity", "c") == [1.0], statsd_in_process.lines
    assert _wait_for(statsd_in_process, f"{name}.push", "c") == [1.0, 1.0]
    assert statsd_in_process.values(f"{name}.pull", "c") == []


def test_operating_md_lists_exactly_the_metrics_the_code_sends():
    text = Path(REPO_ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    rows = re.findall(rf"^\| `{PREFIX}\.<store>\.([a-z_.]+)` \| (counter|timer) \|", text, re.MULTILINE)
    assert dict(rows) == {metric: kind for metric, (kind, _) in METRICS.items()}
