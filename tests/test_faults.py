"""When the store fails, every backend says what failed and never hands a reference on as data.

Against the real local servers: a dead endpoint on push (in a real `airflow dags test` run: the task
fails and no XCom row is written) and on pull (bounded retries with doubling back-off, then an error
naming the reference); an object deleted out of band, corrupted, a missing bucket and refused
credentials, each its own error class; and a push killed in the middle of a 200 MB upload, which
must leave nothing a reader could take for the whole value.

The helpers at the top (`dag_env`, `xcom_rows`, `copy_airflow_home`) are shared with the other
modules that run the test DAGs of tests/dags_for_tests/.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest

from include.xcom_backend import (
    XComAccessDenied,
    XComBucketNotFound,
    XComIntegrityError,
    XComObjectNotFound,
    XComStorageError,
    XComStoreUnreachable,
)
from include.xcom_backend.codecs import CODECS
from include.xcom_backend.reference import Reference
from include.xcom_backend.stores import STORES
from include.xcom_backend.stores.base import ObjectStore
from tests.xcom_calls import load, pull, push, store_of
from tools.dagrun import DagTestResult, airflow_env, run_dag_test
from tools.local_stores import AZURITE_ACCOUNT, AZURITE_KEY, LocalStores, unique_bucket_name

pytestmark = pytest.mark.stores

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DAGS = REPO_ROOT / "tests" / "dags_for_tests"


class Kind(NamedTuple):
    backend: str
    bucket_var: str


KINDS = {
    "s3": Kind("include.s3_xcom_backend_json.S3XComBackendJSON", "XCOM_BACKEND_S3_BUCKET"),
    "gcs": Kind("include.gcs_xcom_backend_json.GCSXComBackendJSON", "XCOM_BACKEND_GCS_BUCKET"),
    "azure": Kind("include.azure_xcom_backend_json.WasbXComBackendJSON", "XCOM_BACKEND_AZURE_CONTAINER"),
    "minio": Kind("include.minio_xcom_backend_json.MinIOXComBackendJSON", "XCOM_BACKEND_MINIO_BUCKET"),
}


# --- shared helpers -------------------------------------------------------------------------------


def copy_airflow_home(airflow_db: Any, target: Path) -> Path:
    """A private Airflow home whose DB is a copy of the session's migrated one (a copy is instant,
    a migration ~10 s), so each module's runs and XCom rows are its own; on either database."""
    return airflow_db.copy_into(target)


def dag_env(
    home: Path,
    local_stores: LocalStores,
    *,
    backend: str,
    extra: Mapping[str, str] | None = None,
    dags_folder: Path = TEST_DAGS,
) -> dict[str, str]:
    """Environment for `airflow dags test` of a test DAG with ``backend`` against the local stores."""
    return airflow_env(
        home,
        xcom_backend=backend,
        extra={**local_stores.env(), "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder), **(extra or {})},
    )


def run_test_dag(dag_id: str, env: Mapping[str, str], **kwargs: Any) -> DagTestResult:
    # Parsing only the DAG's own file keeps each run a few seconds shorter.
    return run_dag_test(dag_id, env, dag_file=TEST_DAGS / f"{dag_id}.py", **kwargs)


_ROWS = """
import json, sys
from sqlalchemy import select
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

columns = (XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value)
with create_session() as session:
    rows = session.execute(select(*columns).where(XComModel.dag_id == sys.argv[1])).all()
print("ROWS " + json.dumps([dict(zip(("run_id", "task_id", "map_index", "key", "value"), r)) for r in rows]))
"""


def xcom_rows(env: Mapping[str, str], dag_id: str) -> list[dict[str, Any]]:
    """The XCom table's rows of ``dag_id``, read through Airflow's own DB session in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-c", _ROWS, dag_id],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("ROWS ")]
    assert result.returncode == 0 and lines, f"reading the XCom table failed:\n{result.stderr[-3000:]}"
    return json.loads(lines[-1][5:])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound but never listening, so nothing else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def dead_endpoint_env(kind: str, port: int, local_stores: LocalStores) -> dict[str, str]:
    """The variables that point one store's backend at ``port`` with otherwise valid settings."""
    url = f"http://127.0.0.1:{port}"
    if kind == "s3":
        conn = local_stores.seaweedfs.airflow_connection()
        conn["extra"] = {**conn["extra"], "endpoint_url": url}
        return {"AIRFLOW_CONN_S3_XCOM_BACKEND_CONN": json.dumps(conn)}
    if kind == "minio":
        return {"MINIO_IP": f"127.0.0.1:{port}"}
    if kind == "azure":
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={url}/{AZURITE_ACCOUNT};"
        )
        conn = {"conn_type": "wasb", "extra": {"connection_string": connection_string}}
        return {"AIRFLOW_CONN_AZURE_XCOM_BACKEND_CONN": json.dumps(conn)}
    return {"STORAGE_EMULATOR_HOST": url}


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_clients(
    local_stores: LocalStores, xcom_table: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("XCOM_BACKEND_KEY_PREFIX", "xcom")
    for name in (
        "XCOM_BACKEND_THRESHOLD_BYTES",
        "XCOM_BACKEND_COMPRESSION",
        "XCOM_BACKEND_READ_ATTEMPTS",
    ):
        monkeypatch.delenv(name, raising=False)
    ObjectStore._instances.clear()
    yield
    ObjectStore._instances.clear()


def use_new_bucket(kind: str, new_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    bucket = new_bucket(kind)
    monkeypatch.setenv(KINDS[kind].bucket_var, bucket)
    ObjectStore._instances.clear()
    return load(KINDS[kind].backend), bucket


def fails_with(cls: Any, stored: Any, error: type[Exception], *fragments: str) -> Exception:
    """Pulling ``stored`` raises exactly ``error`` (not a sibling class) naming every fragment."""
    with pytest.raises(XComStorageError) as info:
        value = pull(cls, stored)
        pytest.fail(f"the pull returned {value!r} instead of failing")  # e.g. the reference as data
    assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {info.value}"
    return info.value


# --- each failure is its own error ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_corrupted_deleted_and_missing_bucket_are_distinct_errors(kind, new_bucket, monkeypatch):
    cls, bucket = use_new_bucket(kind, new_bucket, monkeypatch)
    stored = push(cls, {"amount": 100})
    store, reference = store_of(stored)
    assert pull(cls, stored) == {"amount": 100}

    store.put(reference.key, b'{"amount":999}', content_type="application/json", metadata={})
    corrupted = fails_with(cls, stored, XComIntegrityError, str(reference), "corrupted")

    store.delete(reference.key)  # out of band, as a person or a lifecycle rule would
    deleted = fails_with(cls, stored, XComObjectNotFound, str(reference), repr(bucket))

    missing = unique_bucket_name()
    monkeypatch.setenv(KINDS[kind].bucket_var, missing)
    ObjectStore._instances.clear()
    with pytest.raises(XComBucketNotFound, match=re.escape(repr(missing))):
        push(cls, {"amount": 1})
    ghost = str(Reference(reference.scheme, missing, reference.key, reference.sha256))
    no_bucket = fails_with(cls, ghost, XComBucketNotFound, repr(missing))

    assert len({type(corrupted), type(deleted), type(no_bucket)}) == 3


def wrong_credentials_env(kind: str, local_stores: LocalStores) -> dict[str, str]:
    if kind == "s3":
        conn = local_stores.seaweedfs.airflow_connection() | {"password": "wrong-secret-Zq81"}
        return {"AIRFLOW_CONN_S3_XCOM_BACKEND_CONN": json.dumps(conn)}
    if kind == "minio":
        return {"MINIO_SECRET_KEY": "wrong-secret-Zq81"}
    wrong_key = base64.b64encode(b"wrong-secret-Zq81 is not the azurite key").decode()
    conn = {
        "conn_type": "wasb",
        "extra": {"connection_string": local_stores.azurite.connection_string(wrong_key)},
    }
    return {"AIRFLOW_CONN_AZURE_XCOM_BACKEND_CONN": json.dumps(conn)}


@pytest.mark.parametrize("kind", ["s3", "azure", "minio"])
def test_refused_credentials_are_access_denied(kind, local_stores, new_bucket, monkeypatch):
    cls, bucket = use_new_bucket(kind, new_bucket, monkeypatch)
    stored = push(cls, [1, 2, 3])
    for name, value in wrong_credentials_env(kind, local_stores).items():
        monkeypatch.setenv(name, value)
    ObjectStore._instances.clear()

    with pytest.raises(XComAccessDenied) as info:
        push(cls, [4, 5, 6])
    denied = fails_with(cls, stored, XComAccessDenied, repr(bucket), "refused")
    for error in (info.value, denied):
        assert "wrong-secret-Zq81" not in str(error)
        assert base64.b64encode(b"wrong-secret-Zq81").decode()[:12] not in str(error)


def test_gcs_refusal_maps_to_access_denied_though_fake_gcs_has_no_auth(local_stores, new_bucket, monkeypatch):
    """fake-gcs-server has no authentication: it accepts any credentials, or none, so a refusal
    cannot be produced against it. What can be shown is that GCS's answer to one (403 Forbidden,
    401, or a token that cannot be refreshed) becomes the same XComAccessDenied as elsewhere."""
    import google.auth.exceptions
    from google.api_core import exceptions as gexc

    cls, bucket = use_new_bucket("gcs", new_bucket, monkeypatch)
    stored = push(cls, "kept")
    store, _ = store_of(stored)
    for refusal in (
        gexc.Forbidden("caller does not have storage.objects.get access"),
        gexc.Unauthorized("Invalid Credentials"),
        google.auth.exceptions.RefreshError("invalid_grant"),
    ):

        def refuse(key: str, refusal: Exception = refusal) -> bytes:
            raise refusal

        monkeypatch.setattr(store, "_get", refuse)
        fails_with(cls, stored, XComAccessDenied, repr(bucket))


# --- a dead endpoint --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_dead_endpoint_push_names_it_and_pull_retries_with_backoff(
    kind, local_stores, new_bucket, monkeypatch
):
    import include.xcom_backend.backend as backend_module

    cls, bucket = use_new_bucket(kind, new_bucket, monkeypatch)
    stored = push(cls, {"written": "before the store went away"})
    with closed_port() as port:
        for name, value in dead_endpoint_env(kind, port, local_stores).items():
            monkeypatch.setenv(name, value)
        ObjectStore._instances.clear()
        endpoint = f"127.0.0.1:{port}"

        with pytest.raises(XComStoreUnreachable, match=re.escape(endpoint)):
            push(cls, {"written": "while it is away"})

        # Count the attempts on the very store instance the backend will use, and record the
        # back-off instead of sleeping through it.
        store, reference = store_of(stored)
        attempts: list[float] = []
        real_get = store._get

        def counting_get(key: str) -> bytes:
            attempts.append(time.monotonic())
            return real_get(key)

        delays: list[float] = []
        monkeypatch.setattr(store, "_get", counting_get)
        monkeypatch.setattr(backend_module, "time", SimpleNamespace(sleep=delays.append))
        began = time.monotonic()
        error = fails_with(cls, stored, XComStoreUnreachable, endpoint, str(reference))
        elapsed = time.monotonic() - began

    assert len(attempts) == 4, "XCOM_BACKEND_READ_ATTEMPTS defaults to 4"
    assert delays == [0.5, 1.0, 2.0]
    assert elapsed < 30, f"{kind}: each failed attempt should be quick, took {elapsed:.1f} s in all"
    assert "while reading" in str(error)


def test_pull_backoff_really_waits(local_stores, new_bucket, monkeypatch):
    cls, _ = use_new_bucket("s3", new_bucket, monkeypatch)
    stored = push(cls, 1)
    monkeypatch.setenv("XCOM_BACKEND_READ_ATTEMPTS", "3")
    with closed_port() as port:
        for name, value in dead_endpoint_env("s3", port, local_stores).items():
            monkeypatch.setenv(name, value)
        ObjectStore._instances.clear()
        began = time.monotonic()
        fails_with(cls, stored, XComStoreUnreachable, f"127.0.0.1:{port}")
        elapsed = time.monotonic() - began
    assert 1.5 <= elapsed < 15, f"3 attempts wait 0.5 s + 1 s between them; took {elapsed:.1f} s"


@pytest.fixture(scope="module")
def faults_home(airflow_db: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_airflow_home(airflow_db, tmp_path_factory.mktemp("faults-airflow-home"))


@pytest.mark.e2e
def test_push_to_a_dead_store_fails_the_task_and_writes_no_xcom_row(faults_home, local_stores):
    with closed_port() as port:
        env = dag_env(
            faults_home,
            local_stores,
            backend=KINDS["s3"].backend,
            extra=dead_endpoint_env("s3", port, local_stores),
        )
        result = run_test_dag("xcom_pair", env, conf={"payload": "never-stored"})

    assert result.state == "failed", result.output
    assert f"XCom store at http://127.0.0.1:{port} is unreachable" in result.output, result.output
    assert "XComStoreUnreachable" in result.output
    assert "CONSUMED" not in result.output  # the consumer never ran
    assert xcom_rows(env, "xcom_pair") == [], "a failed push must leave no reference behind"
    # The connection carried the S3 secret key as its password; the task log must not show it.
    assert local_stores.seaweedfs.secret_key not in result.output


# --- a push killed half way -------------------------------------------------------------------------

BIG = 200 * 1024 * 1024
KILL_AFTER = 60 * 1024 * 1024  # bytes on the wire before the SIGKILL: well into the upload

_BIG_PUSH = """
import importlib, sys
module, _, name = sys.argv[1].rpartition(".")
cls = getattr(importlib.import_module(module), name)
value = "x" * int(sys.argv[2])
print("PUSHING", flush=True)
cls.serialize_value(value, key="big", task_id="big_upload", dag_id="killed", run_id="run_1", map_index=-1)
print("PUSHED", flush=True)
"""

_BYTES_SENT = re.compile(r"\bbytes_acked:(\d+)")
_ADDRESS = re.compile(r"^\S+:\d+$")


def _bytes_sent(pid: int, seen: dict[str, int]) -> int:
    """TCP bytes the process's sockets got acknowledged so far, summed over every socket it had.

    `ss` reads them from the kernel, so the upload runs exactly as in production, untouched.
    """
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if f"pid={pid}," in line and i + 1 < len(lines):
            connection = " ".join(f for f in line.split() if _ADDRESS.match(f))
            match = _BYTES_SENT.search(lines[i + 1])
            if match:
                seen[connection] = max(seen.get(connection, 0), int(match[1]))
    return sum(seen.values())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs `ss` (iproute2) to watch the upload")
@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_a_push_killed_mid_upload_leaves_no_object_readable_as_whole(
    kind, local_stores, new_bucket, monkeypatch
):
    """The two commit protocols. S3 uploads 200 MB as a multipart upload whose parts stay invisible
    until the final CompleteMultipartUpload, so a killed upload leaves an incomplete upload, not an
    object (the AbortIncompleteMultipartUpload rule of docs/operating.md reclaims its parts); the
    MinIO backend speaks the same protocol. Azure stages blocks and commits the block list last:
    before the commit there is no blob, only uncommitted blocks that Azure discards after 7 days.
    (GCS's resumable upload likewise becomes an object only when finalised; fake-gcs-server would
    only show the emulator's behaviour, so it is left out to save time.) Whatever a store does, the
    reference's checksum is the last guard."""
    cls, bucket = use_new_bucket(kind, new_bucket, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _BIG_PUSH, KINDS[kind].backend, str(BIG)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "PUSHING"
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            if _bytes_sent(child.pid, seen) >= KILL_AFTER:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if child.poll() is None and child.returncode is None:
            child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL, "the upload finished before it could be killed"
    assert "PUSHED" not in child.stdout.read()
    assert sum(seen.values()) < BIG, "killed after the last byte was sent"

    checksum = big_value_checksum()
    store = STORES[store_scheme(kind)](bucket)
    leftovers = list(store.list("xcom/killed/"))
    for item in leftovers:
        reference = str(Reference(store.scheme, bucket, item.key, checksum))
        with pytest.raises((XComIntegrityError, XComObjectNotFound)):
            pull(cls, reference)
    assert leftovers == [], f"{kind}: a killed upload left {[(o.key, o.size) for o in leftovers]}"

    # The upload was caught half way, in the state each protocol keeps until its final step.
    if kind == "s3":
        client = local_stores.seaweedfs.client()
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="xcom/killed/").get("Uploads", [])
        assert uploads, "no incomplete multipart upload: the kill did not interrupt the upload"
    elif kind == "azure":
        container = local_stores.azurite.client().get_container_client(bucket)
        staged = list(container.list_blobs(name_starts_with="xcom/killed/", include=["uncommittedblobs"]))
        assert staged, "no uncommitted blocks: the kill did not interrupt the upload"


@functools.cache
def big_value_checksum() -> str:
    """What a reader would check the object against: the checksum of the complete upload."""
    return hashlib.sha256(CODECS[".json"].encode("x" * BIG)).hexdigest()


def store_scheme(kind: str) -> str:
    return "wasb" if kind == "azure" else kind
