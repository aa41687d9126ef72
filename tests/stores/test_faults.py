"""When the store fails, every backend says what failed and never hands a reference on as data.

Against the real local servers: an endpoint that refuses connections and one that accepts and never
answers, on push and pull of every store (the attempts counted at the SDK's transport, the time
bounded by the retry settings; in a real `airflow dags test` run a failed push fails the task and
writes no XCom row); an object deleted out of band, corrupted, a missing bucket and refused
credentials, each its own error class; and a push killed in the middle of a 200 MB upload, which
must leave nothing a reader could take for the whole value.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from include.xcom_backend import (
    XComAccessDenied,
    XComBucketNotFound,
    XComIntegrityError,
    XComObjectNotFound,
    XComStorageError,
    XComStoreUnreachable,
)
from include.xcom_backend.codecs import JSON_CODEC
from include.xcom_backend.reference import Reference
from include.xcom_backend.registry import open_store
from tests.support.dagruns import REPO_ROOT, copy_airflow_home, dag_env, run_test_dag, xcom_rows
from tests.support.endpoints import HungEndpoint, closed_port, counting_connects, failing_endpoint_env
from tests.support.schemes import SERVED, bucket_var, json_backend
from tests.support.xcom_calls import pull, push, store_of
from tools.servers import LocalServers, unique_bucket_name

# Pushes and pulls go through the real metadata DB (SQLite or PostgreSQL: XCOM_TEST_DB).
pytestmark = [pytest.mark.stores, pytest.mark.usefixtures("xcom_table")]


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


@pytest.mark.parametrize("scheme", SERVED)
def test_corrupted_deleted_and_missing_bucket_are_distinct_errors(
    scheme, use_new_bucket, monkeypatch, reset_stores
):
    cls, bucket = use_new_bucket(scheme)
    stored = push(cls, {"amount": 100})
    store, reference = store_of(stored)
    assert pull(cls, stored) == {"amount": 100}

    store.put(reference.key, b'{"amount":999}', content_type="application/json", metadata={})
    corrupted = fails_with(cls, stored, XComIntegrityError, str(reference), "corrupted")

    store.delete(reference.key)  # out of band, as a person or a lifecycle rule would
    deleted = fails_with(cls, stored, XComObjectNotFound, str(reference), repr(bucket))

    missing = unique_bucket_name()
    monkeypatch.setenv(bucket_var(scheme), missing)
    reset_stores()
    with pytest.raises(XComBucketNotFound, match=re.escape(repr(missing))):
        push(cls, {"amount": 1})
    ghost = str(Reference(reference.scheme, missing, reference.key, reference.sha256))
    no_bucket = fails_with(cls, ghost, XComBucketNotFound, repr(missing))

    assert len({type(corrupted), type(deleted), type(no_bucket)}) == 3


def wrong_credentials_env(scheme: str, local_stores: LocalServers) -> dict[str, str]:
    if scheme == "s3":
        conn = local_stores.seaweedfs.airflow_connection() | {"password": "wrong-secret-Zq81"}
        return {"AIRFLOW_CONN_S3_XCOM_BACKEND_CONN": json.dumps(conn)}
    if scheme == "minio":
        return {"MINIO_SECRET_KEY": "wrong-secret-Zq81"}
    wrong_key = base64.b64encode(b"wrong-secret-Zq81 is not the azurite key").decode()
    conn = {
        "conn_type": "wasb",
        "extra": {"connection_string": local_stores.azurite.connection_string(wrong_key)},
    }
    return {"AIRFLOW_CONN_AZURE_XCOM_BACKEND_CONN": json.dumps(conn)}


@pytest.mark.parametrize("scheme", ["s3", "wasb", "minio"])
def test_refused_credentials_are_access_denied(
    scheme, local_stores, use_new_bucket, monkeypatch, reset_stores
):
    cls, bucket = use_new_bucket(scheme)
    stored = push(cls, [1, 2, 3])
    for name, value in wrong_credentials_env(scheme, local_stores).items():
        monkeypatch.setenv(name, value)
    reset_stores()

    with pytest.raises(XComAccessDenied) as info:
        push(cls, [4, 5, 6])
    denied = fails_with(cls, stored, XComAccessDenied, repr(bucket), "refused")
    for error in (info.value, denied):
        assert "wrong-secret-Zq81" not in str(error)
        assert base64.b64encode(b"wrong-secret-Zq81").decode()[:12] not in str(error)


def test_gcs_refusal_maps_to_access_denied_though_fake_gcs_has_no_auth(use_new_bucket, monkeypatch):
    """fake-gcs-server has no authentication: it accepts any credentials, or none, so a refusal
    cannot be produced against it. What can be shown is that GCS's answer to one (403 Forbidden,
    401, or a token that cannot be refreshed) becomes the same XComAccessDenied as elsewhere."""
    import google.auth.exceptions
    from google.api_core import exceptions as gexc

    cls, bucket = use_new_bucket("gcs")
    stored = push(cls, "kept")
    store, _ = store_of(stored)
    for refusal in (
        gexc.Forbidden("caller does not have storage.objects.get access"),
        gexc.Unauthorized("Invalid Credentials"),
        google.auth.exceptions.RefreshError("invalid_grant"),
    ):

        def refuse(key: str, sink: Any, refusal: Exception = refusal) -> None:
            raise refusal

        monkeypatch.setattr(store, "_get_into", refuse)  # what a pull downloads through
        fails_with(cls, stored, XComAccessDenied, repr(bucket))


# --- a refused and a hung endpoint ----------------------------------------------------------------
# Small timeouts so that each case takes seconds; the bound asserted is the one the settings give.
def _point_at(
    scheme: str, port: int, attempts: int, local_stores: LocalServers, monkeypatch: Any, reset: Any
) -> None:
    quick = {
        "AIRFLOW__XCOM_BACKEND__ATTEMPTS": str(attempts),
        "AIRFLOW__XCOM_BACKEND__CONNECT_TIMEOUT": "1",
        "AIRFLOW__XCOM_BACKEND__READ_TIMEOUT": "1",
    }
    for name, value in {**quick, **failing_endpoint_env(scheme, port, local_stores)}.items():
        monkeypatch.setenv(name, value)
    reset()


def _fails_unreachable(call: Any) -> tuple[XComStoreUnreachable, float]:
    """The error ``call`` raises, and when (time.monotonic())."""
    with pytest.raises(XComStoreUnreachable) as info:
        call()
    return info.value, time.monotonic()


@pytest.mark.parametrize("scheme", SERVED)
def test_a_refused_endpoint_ends_push_and_pull_within_the_bound(
    scheme, local_stores, use_new_bucket, monkeypatch, reset_stores
):
    cls, _ = use_new_bucket(scheme)
    stored = push(cls, {"written": "before the store went away"})
    with closed_port() as port, counting_connects(port) as connects:
        _point_at(scheme, port, 3, local_stores, monkeypatch, reset_stores)
        store = open_store(scheme)
        pushed, pushed_at = _fails_unreachable(lambda: push(cls, {"written": "while it is away"}))
        push_times = list(connects.times)
        pulled, pulled_at = _fails_unreachable(lambda: pull(cls, stored))
        pull_times = connects.times[len(push_times) :]

    endpoint = f"127.0.0.1:{port}"
    assert endpoint in str(pushed) and endpoint in str(pulled)
    assert f"while reading {Reference.parse(stored)}" in str(pulled)
    # One connection per attempt: no SDK retries under the policy's.
    assert (len(push_times), len(pull_times)) == (store.policy.attempts, store.policy.attempts)
    for times, failed_at in ((push_times, pushed_at), (pull_times, pulled_at)):
        seconds = failed_at - times[0]
        assert sum(store.policy.backoffs()) <= seconds <= store.failure_bound, (scheme, seconds)


@pytest.mark.parametrize("scheme", SERVED)
def test_a_hung_endpoint_ends_push_and_pull_within_the_bound(
    scheme, local_stores, use_new_bucket, monkeypatch, reset_stores
):
    cls, _ = use_new_bucket(scheme)
    stored = push(cls, {"written": "before the store hung"})
    with HungEndpoint() as hung:
        _point_at(scheme, hung.port, 2, local_stores, monkeypatch, reset_stores)
        store = open_store(scheme)
        pushed, pushed_at = _fails_unreachable(lambda: push(cls, {"written": "while it hangs"}))
        push_attempts, push_began = hung.accepted, hung.first_accepted
        hung.first_accepted = None
        pulled, pulled_at = _fails_unreachable(lambda: pull(cls, stored))
        pull_attempts, pull_began = hung.accepted - push_attempts, hung.first_accepted

    assert f"127.0.0.1:{hung.port}" in str(pushed) and str(Reference.parse(stored)) in str(pulled)
    policy = store.policy
    assert (policy.attempts, push_attempts, pull_attempts) == (2, 2, 2)
    for began, failed_at in ((push_began, pushed_at), (pull_began, pulled_at)):
        assert began is not None
        # Each attempt waited for its read timeout (less the server thread's lag in noting the
        # first connection), and all of them ended within the bound.
        seconds = failed_at - began
        assert seconds >= policy.attempts * policy.read_timeout - 0.1, (scheme, seconds)
        assert seconds <= store.failure_bound, (scheme, seconds)


@pytest.fixture(scope="module")
def faults_home(airflow_db: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_airflow_home(airflow_db, tmp_path_factory.mktemp("faults-airflow-home"))


@pytest.mark.e2e
def test_push_to_a_dead_store_fails_the_task_and_writes_no_xcom_row(faults_home, local_stores):
    with closed_port() as port:
        env = dag_env(
            faults_home,
            local_stores,
            backend=json_backend("s3"),
            extra=failing_endpoint_env("s3", port, local_stores),
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
@pytest.mark.parametrize("scheme", ["s3", "wasb"])
def test_a_push_killed_mid_upload_leaves_no_object_readable_as_whole(scheme, local_stores, use_new_bucket):
    """The two commit protocols. S3 uploads 200 MB as a multipart upload whose parts stay invisible
    until the final CompleteMultipartUpload, so a killed upload leaves an incomplete upload, not an
    object (the AbortIncompleteMultipartUpload rule of docs/operating.md reclaims its parts); the
    MinIO backend speaks the same protocol. Azure stages blocks and commits the block list last:
    before the commit there is no blob, only uncommitted blocks that Azure discards after 7 days.
    (GCS's resumable upload likewise becomes an object only when finalised; fake-gcs-server would
    only show the emulator's behaviour, so it is left out to save time.) Whatever a store does, the
    reference's checksum is the last guard."""
    cls, bucket = use_new_bucket(scheme)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _BIG_PUSH, json_backend(scheme), str(BIG)],
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
    store = open_store(scheme, bucket)
    leftovers = list(store.list("xcom/killed/"))
    for item in leftovers:
        reference = str(Reference(store.scheme, bucket, item.key, checksum))
        with pytest.raises((XComIntegrityError, XComObjectNotFound)):
            pull(cls, reference)
    assert leftovers == [], f"{scheme}: a killed upload left {[(o.key, o.size) for o in leftovers]}"

    # The upload was caught half way, in the state each protocol keeps until its final step.
    if scheme == "s3":
        client = local_stores.seaweedfs.client()
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="xcom/killed/").get("Uploads", [])
        assert uploads, "no incomplete multipart upload: the kill did not interrupt the upload"
    elif scheme == "wasb":
        container = local_stores.azurite.client().get_container_client(bucket)
        staged = list(container.list_blobs(name_starts_with="xcom/killed/", include=["uncommittedblobs"]))
        assert staged, "no uncommitted blocks: the kill did not interrupt the upload"


@functools.cache
def big_value_checksum() -> str:
    """What a reader would check the object against: the checksum of the complete upload."""
    return hashlib.sha256(JSON_CODEC.encode("x" * BIG).data).hexdigest()
