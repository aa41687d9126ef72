"""Objects go when their XComs go: purge on re-run, and the xcom_storage_cleanup DAG for the rest.

End to end with `airflow dags test`: a task that runs again on the same logical date gets its old
XCom cleared by Airflow 3.3's task runner (`xcom_keys_to_clear` -> `XCom.delete` -> `purge`), which
deletes the old object; after `airflow db clean` removes the XCom rows, the maintenance DAG finds
the now unreferenced object through the Task SDK and deletes it. The selection rules (retention,
grace period, layout, dry run, batches) are shown on the four stores with `clean_store` directly.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.xcom_backend.cleanup import clean_store, configured_stores
from include.xcom_backend.reference import (
    Reference,
    XComGroup,
    is_xcom_object,
    key_prefix,
    object_key,
    parse_object_key,
    run_prefix,
)
from include.xcom_backend.registry import open_store
from include.xcom_backend.stores.base import ObjectStore
from tests.support.dagruns import REPO_ROOT, copy_airflow_home, dag_env, run_test_dag
from tests.support.schemes import SERVED, bucket_var, json_backend
from tests.support.xcom_calls import push
from tools.dagrun import run_dag_test

# Pushes and pulls go through the real metadata DB (SQLite or PostgreSQL: XCOM_TEST_DB).
pytestmark = pytest.mark.usefixtures("xcom_table")

DAG_FILE = REPO_ROOT / "dags" / "xcom_storage_cleanup.py"
RETENTION = timedelta(days=30)


# --- object keys say which XCom they belong to ------------------------------------------------------


@pytest.mark.parametrize(
    ("dag_id", "run_id", "task_id", "map_index", "key"),
    [
        ("etl", "manual__2026-01-01T00:00:00+00:00", "extract", -1, "return_value"),
        ("etl", "scheduled__2026-01-01T00:00:00+00:00", "group.load", 199, "rows"),
        ("d", "r", "../../escape", 3, "a/b"),
        ("d", "r", ".hidden", 0, "ключ ✓"),
        ("d", "r", "tab\there", 0, "nul\x00"),
        ("d", "r", "t", 0, ""),
    ],
)
def test_object_keys_give_back_the_ids_they_were_built_from(dag_id, run_id, task_id, map_index, key):
    built = object_key(
        "xcom", dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, key=key, extension=".json"
    )
    assert is_xcom_object(built, "xcom")
    assert parse_object_key(built, "xcom") == (XComGroup(dag_id, run_id, task_id, key), map_index)


def test_keys_the_backends_did_not_write_are_not_taken_for_xcoms():
    long_id = "t" * 500  # shortened with a digest: still an XCom object, but its id cannot be recovered
    built = object_key(
        "xcom", dag_id="d", run_id="r", task_id=long_id, map_index=0, key="k", extension=".json"
    )
    assert is_xcom_object(built, "xcom") and parse_object_key(built, "xcom") is None
    uuid_name = "0123456789abcdef0123456789abcdef.json"
    for key in (
        f"other/d/r/t/-1/k/{uuid_name}",  # another prefix
        f"xcomx/d/r/t/-1/k/{uuid_name}",
        f"xcom/d/r/t/-1/{uuid_name}",  # a segment short
        "xcom/d/r/t/-1/k/notes.json",  # not a backend's object name
        f"xcom/d/r/t/x/k/{uuid_name}",  # map index not a number
        f"xcom/d/r/t~3a/-1/k/{uuid_name}",  # an escape the backends never write
    ):
        assert parse_object_key(key, "xcom") is None, key
    assert key_prefix("team/xcom/") == "team/xcom/" and key_prefix("") == ""
    assert run_prefix(built) == "xcom/d/r/"


# --- what goes and what stays, on every store ------------------------------------------------------


def _key_of(stored: str) -> str:
    """The object key of a stored reference; fails the test when `stored` is not one."""
    reference = Reference.parse(stored)
    assert reference is not None, f"not a reference: {stored!r}"
    return reference.key


class Rows:
    """A stand-in for the XCom table: which object each (dag, run, task, key) references now."""

    def __init__(self) -> None:
        self.references: dict[XComGroup, set[str]] = {}
        self.asked: list[XComGroup] = []

    def add(self, stored: str) -> None:
        key = _key_of(stored)
        parsed = parse_object_key(key, "xcom")
        assert parsed is not None
        self.references.setdefault(parsed[0], set()).add(key)

    def __call__(self, group: XComGroup) -> Collection[str]:
        self.asked.append(group)
        return self.references.get(group, set())


@pytest.mark.stores
@pytest.mark.parametrize("scheme", SERVED)
def test_cleanup_selects_expired_and_orphaned_objects_and_deletes_in_batches(scheme, use_new_bucket):
    cls, bucket = use_new_bucket(scheme)
    store = open_store(scheme, bucket)
    rows = Rows()
    # Three mapped instances whose rows exist, two whose rows are gone, and a replaced value.
    for i in range(3):
        rows.add(push(cls, {"i": i}, task_id="mapped", map_index=i))
    orphans = [push(cls, {"gone": i}, task_id="mapped", map_index=10 + i) for i in range(2)]
    replaced = push(cls, "old", task_id="single")
    rows.add(push(cls, "new", task_id="single"))
    # Not XComs: never touched, however old.
    store.put("notes/readme.txt", b"keep", content_type="text/plain", metadata={})
    store.put("xcom/readme.txt", b"keep", content_type="text/plain", metadata={})
    keys_before = {item.key for item in store.list("")}
    orphan_keys = {_key_of(s) for s in [*orphans, replaced]}

    dry = clean_store(store, lookup=rows, retention=RETENTION, grace=timedelta(0))
    assert dry.dry_run and (dry.scanned, dry.orphaned, dry.expired, dry.deleted) == (8, 3, 0, 0)
    assert dry.orphaned_bytes == sum(item.size for item in store.list("") if item.key in orphan_keys)
    assert {item.key for item in store.list("")} == keys_before, "a dry run deletes nothing"
    assert len(set(rows.asked)) == len(rows.asked) == 2, "one lookup per task and key, not per object"

    young = clean_store(store, lookup=rows, retention=RETENTION, grace=timedelta(hours=1), dry_run=False)
    assert (young.kept_young, young.deleted) == (7, 0), "objects younger than the grace period stay"

    done = clean_store(
        store, lookup=rows, retention=RETENTION, grace=timedelta(0), dry_run=False, batch_size=2
    )
    assert (done.orphaned, done.deleted, done.failed) == (3, 3, 0)
    assert done.deleted_bytes == dry.orphaned_bytes
    assert {item.key for item in store.list("")} == keys_before - orphan_keys

    later = datetime.now(UTC) + RETENTION + timedelta(days=1)
    expired = clean_store(
        store, lookup=rows, retention=RETENTION, grace=timedelta(0), dry_run=False, now=later
    )
    assert (expired.expired, expired.deleted, expired.not_xcom) == (4, 4, 1)
    assert {item.key for item in store.list("")} == {"notes/readme.txt", "xcom/readme.txt"}
    assert "expired (" in expired.summary() and "deleted 4" in expired.summary()


def test_grace_longer_than_retention_is_refused():
    with pytest.raises(ValueError, match="grace"):
        clean_store(open_store("s3"), lookup=Rows(), retention=timedelta(days=1), grace=timedelta(days=2))


def test_the_configured_backend_names_the_stores_to_clean(monkeypatch):
    for scheme in SERVED:
        assert [s.scheme for s in configured_stores(json_backend(scheme))] == [scheme]
    monkeypatch.setenv("AIRFLOW__CORE__XCOM_BACKEND", json_backend("gcs"))
    assert [s.scheme for s in configured_stores()] == ["gcs"], "Airflow's resolver finds the configured one"
    mirror = configured_stores("include.mirror_xcom_backend.S3GCSMirrorXComBackendJSON")
    assert [s.scheme for s in mirror] == ["s3", "gcs"]
    for other in ("", "airflow.sdk.bases.xcom.BaseXCom"):
        with pytest.raises(ValueError, match="not one of this project's object-store backends"):
            configured_stores(other)


def test_the_dag_is_a_dry_run_unless_told_otherwise(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("XCOM_CLEANUP_DRY_RUN", raising=False)
    bag = DagBag(dag_folder=DAG_FILE, bundle_path=DAG_FILE.parent, safe_mode=False)
    dag = bag.dags["xcom_storage_cleanup"]
    defaults = {name: param.value for name, param in dag.params.items()}
    assert defaults == {"dry_run": True, "retention_days": 30, "orphan_grace_hours": 2, "batch_size": 500}
    assert dag.doc_md and "dry run" in dag.doc_md and dag.tags
    assert all(task.retries >= 2 for task in dag.tasks)


# --- end to end -------------------------------------------------------------------------------------


def pair_objects(store: ObjectStore) -> list[str]:
    return sorted(item.key for item in store.list("xcom/xcom_pair/"))


_ROWS_THEN_CLEAN = """
import json, sys
from datetime import datetime, timedelta, timezone
from sqlalchemy import select
from airflow.models.xcom import XComModel
from airflow.utils.db_cleanup import run_cleanup
from airflow.utils.session import create_session

columns = (XComModel.task_id, XComModel.value)
with create_session() as session:
    rows = session.execute(select(*columns).where(XComModel.dag_id == sys.argv[1])).all()
print("ROWS " + json.dumps([dict(zip(("task_id", "value"), r)) for r in rows]))
# What `airflow db clean --tables xcom --dag-ids <dag> --skip-archive --yes` runs, minus a process start.
run_cleanup(
    clean_before_timestamp=datetime.now(timezone.utc) + timedelta(hours=1),
    table_names=["xcom"],
    dag_ids=[sys.argv[1]],
    skip_archive=True,
    confirm=False,
)
with create_session() as session:
    left = session.scalars(select(XComModel.key).where(XComModel.dag_id == sys.argv[1])).all()
print("LEFT " + json.dumps(left))
"""


def rows_then_db_clean(env: dict[str, str], dag_id: str) -> list[dict[str, Any]]:
    """The XCom rows of ``dag_id``, read through Airflow's DB session; then Airflow's own DB cleanup
    deletes them all, as a scheduled `airflow db clean` does with old rows."""
    result = subprocess.run(
        [sys.executable, "-c", _ROWS_THEN_CLEAN, dag_id], env=env, capture_output=True, text=True, check=False
    )
    out = {
        line[:4]: json.loads(line[5:])
        for line in result.stdout.splitlines()
        if line[:5] in ("ROWS ", "LEFT ")
    }
    assert result.returncode == 0 and out.get("LEFT") == [], f"{result.stdout[-2000:]}{result.stderr[-3000:]}"
    return out["ROWS"]


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"airflow {' '.join(args)}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.stores
@pytest.mark.e2e
def test_clear_and_rerun_purges_the_old_object_and_the_dag_deletes_orphans(
    airflow_db, local_stores, new_bucket, tmp_path
):
    bucket = new_bucket("s3")
    home = copy_airflow_home(airflow_db, tmp_path / "airflow-home")
    env = dag_env(home, local_stores, backend=json_backend("s3"), extra={bucket_var("s3"): bucket})
    store = open_store("s3", bucket)
    store.put("notes/keep.txt", b"not an XCom", content_type="text/plain", metadata={})

    first = run_test_dag("xcom_pair", env)
    assert first.state == "success", first.output
    run_id = re.search(r"DagRun Finished: dag_id=xcom_pair, .*?run_id=([^,]+),", first.output)[1]
    [old] = pair_objects(store)

    # Clear the producer and run it again in the same DAG run, as from the UI. Airflow 3.3 hands the
    # re-run the keys it pushed before (`xcom_keys_to_clear`); the task runner deletes each through
    # `XCom.delete`, which calls the backend's `purge` with the old reference.
    airflow(env, "tasks", "clear", "xcom_pair", "--task-regex", "^produce$", "--yes")
    airflow(env, "tasks", "test", "xcom_pair", "produce", run_id)
    [new] = pair_objects(store)
    assert new != old, "the re-run's purge deleted the first run's object"
    [row] = rows_then_db_clean(env, "xcom_pair")
    assert (row["task_id"], _key_of(row["value"])) == ("produce", new)
    assert pair_objects(store) == [new]

    cleanup_env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent)}
    conf = {"dry_run": False, "orphan_grace_hours": 0}
    result = run_dag_test("xcom_storage_cleanup", cleanup_env, conf=conf, dag_file=DAG_FILE)
    assert result.state == "success", result.output
    assert pair_objects(store) == [], "the orphan was deleted"
    counts = r"Cleanup: \d+ objects scanned, 0 expired, 1 orphaned, 1 deleted \(\d+ bytes\), 0 failed"
    assert re.search(counts, result.output), result.output
    assert [item.key for item in store.list("notes/")] == ["notes/keep.txt"]
