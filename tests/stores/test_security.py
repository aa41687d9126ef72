"""No pickle, no secret in what the backends write or say, no key outside the XCom prefix.

* Pickle: no Python file of the project imports pickle, dill, cloudpickle (or shelve, jsonpickle) or
  calls pandas' pickle functions, and no object the backends store carries a pickle, raw or
  base64/hex-encoded inside JSON or Parquet.
* Secrets: with an S3 connection that carries a password, MINIO_SECRET_KEY, and an Azure SAS token
  (a real one, signed with Azurite's key), pushes and pulls that succeed and that fail leave the
  secret out of references, error messages and logs, in-process and in a real task log.
  (.env being git-ignored and .env.example holding placeholders: tests/project/test_project_layout.py.)
* Keys: a task id or key with `/`, `..` or control characters stays one segment under the prefix.
"""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import os
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.xcom_backend import XComAccessDenied, XComBucketNotFound, XComObjectNotFound
from include.xcom_backend.codecs import formats_of
from include.xcom_backend.reference import Reference, encode_component, object_key
from include.xcom_backend.registry import TABLE, open_store
from tests.support.dagruns import REPO_ROOT, copy_airflow_home, dag_env, run_test_dag
from tests.support.hostile_values import FRAMES, VALUES
from tests.support.schemes import bucket_var, json_backend
from tests.support.xcom_calls import load, pull, push, store_of
from tools.servers import unique_bucket_name

# Pushes and pulls go through the real metadata DB (SQLite or PostgreSQL: XCOM_TEST_DB).
pytestmark = pytest.mark.usefixtures("xcom_table")

S3_CONN_ID = TABLE["s3"].options["conn_id"].default
AZURE_CONN_ID = TABLE["wasb"].options["conn_id"].default

# --- no pickle in the code ----------------------------------------------------------------------------

PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "jsonpickle", "joblib"}
PICKLING_CALLS = {"read_pickle", "to_pickle"}  # pandas' own pickle I/O
SKIPPED_DIRS = {".venv", "node_modules", ".git", ".airflow", ".pytest_cache", ".ruff_cache", "__pycache__"}


def project_python_files() -> list[Path]:
    files = []
    for root, dirs, names in os.walk(REPO_ROOT):
        # Pruned in place, so that the virtualenv and node_modules are never walked.
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        files += [Path(root) / name for name in names if name.endswith(".py")]
    return sorted(files)


def pickle_uses(source: str) -> list[str]:
    """Imports of a pickling module, and uses of `pickle.*` or pandas' pickle calls, by line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        elif isinstance(node, ast.Attribute):
            names = [node.attr] if node.attr in PICKLING_CALLS else []
            if isinstance(node.value, ast.Name) and node.value.id in PICKLING_MODULES:
                names.append(node.value.id)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            names = [
                a.value.split(".")[0]
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
        else:
            continue
        found += [(node.lineno, name) for name in names if name in PICKLING_MODULES | PICKLING_CALLS]
    return [f"line {line}: {name}" for line, name in sorted(found)]


def _is_dynamic_import(func: ast.expr) -> bool:
    """`__import__(...)` or `importlib.import_module(...)`."""
    return (isinstance(func, ast.Name) and func.id == "__import__") or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )


def test_the_scanner_finds_what_it_looks_for():
    hits = pickle_uses(
        "import pickle\nfrom dill import dumps\nimport cloudpickle as cp\nx = df.to_pickle('f')\n"
        "y = pickle.loads(b'')\n__import__('pickle')\nimportlib.import_module('dill')\n"
    )
    assert hits == [
        "line 1: pickle",
        "line 2: dill",
        "line 3: cloudpickle",
        "line 4: to_pickle",
        "line 5: pickle",
        "line 6: pickle",
        "line 7: dill",
    ]
    assert pickle_uses("text = 'pickle is mentioned in a string'\n") == []


def test_no_project_code_pickles():
    files = project_python_files()
    assert any(p.match("include/xcom_backend/backend.py") for p in files)
    offenders = {
        str(path.relative_to(REPO_ROOT)): uses
        for path in files
        if (uses := pickle_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


# --- no pickle in what is stored ----------------------------------------------------------------------

_PICKLE_START = re.compile(rb"^\x80[\x02-\x05]")
# Protocol 4 and 5 start every pickle with PROTO then FRAME: three bytes that do not occur by chance
# in the few kilobytes of a test object.
_PICKLE_FRAME = (b"\x80\x04\x95", b"\x80\x05\x95")


def is_pickle(blob: bytes) -> bool:
    return bool(_PICKLE_START.match(blob)) or any(marker in blob for marker in _PICKLE_FRAME)


def embedded_blobs(value: Any) -> Iterator[bytes]:
    """Every string in a JSON structure that decodes as base64 or hex, decoded."""
    if isinstance(value, dict):
        for item in value.values():
            yield from embedded_blobs(item)
    elif isinstance(value, list):
        for item in value:
            yield from embedded_blobs(item)
    elif isinstance(value, str) and len(value) >= 8:
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
            yield bytes.fromhex(value)
        if len(value) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", value):
            try:
                decoded = base64.b64decode(value, validate=True)
            except binascii.Error:
                decoded = b""
            if decoded:
                yield decoded


def stored_pickles(key: str, data: bytes) -> list[str]:
    codec, compression = formats_of(key)
    if compression:
        data = compression.decompress(data)
    problems = ["the object is a pickle"] if is_pickle(data) else []
    structures: list[Any] = []
    if codec.extension == ".json":
        structures.append(json.loads(data))
    elif codec.extension in (".parquet", ".feather"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if codec.extension == ".parquet":
            table = pq.read_table(pa.BufferReader(data))
        else:
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        for meta_key, meta_value in (table.schema.metadata or {}).items():
            structures.append(json.loads(meta_value))
            if is_pickle(meta_value):
                problems.append(f"schema metadata {meta_key!r} is a pickle")
        for column in table.columns:
            if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                problems += [
                    f"binary cell in {column}" for cell in column.to_pylist() if cell and is_pickle(cell)
                ]
    problems += [
        "an embedded pickle"
        for structure in structures
        for blob in embedded_blobs(structure)
        if is_pickle(blob)
    ]
    return problems


# pickle.dumps({"a": 1}, protocol=4), written out so that the project needs no pickle even here.
A_PICKLE = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."


def test_the_stored_object_scan_finds_pickles():
    payload = A_PICKLE
    assert is_pickle(payload) and is_pickle(b"PAR1" + payload)
    wrapped = json.dumps({"__data__": base64.b64encode(payload).decode(), "h": payload.hex()}).encode()
    assert stored_pickles(f"{'0' * 32}.json", wrapped) == ["an embedded pickle", "an embedded pickle"]


@pytest.mark.stores
def test_no_stored_object_holds_a_pickle(new_bucket, monkeypatch):
    """Every accepted catalogue value through the JSON and the pandas codecs, plain and compressed;
    the bytes are the same on every store, so one store holds them all."""
    bucket = new_bucket("s3")
    monkeypatch.setenv(bucket_var("s3"), bucket)
    json_backend = load("include.s3_xcom_backend_json.S3XComBackendJSON")
    pandas_backend = load("include.s3_xcom_backend_pandas.S3XComBackendPandas")
    for number, (_, factory, expected) in enumerate(VALUES + FRAMES):
        if expected != "exact":
            continue
        for cls in (json_backend, pandas_backend):
            with contextlib.suppress(TypeError):  # refused by the JSON backend: nothing stored
                push(cls, factory(), task_id=f"value_{number}")
    for setting, value in (
        ("AIRFLOW__XCOM_BACKEND__COMPRESSION", "gzip"),
        ("AIRFLOW__XCOM_BACKEND__PANDAS_FORMAT", "csv"),
    ):
        monkeypatch.setenv(setting, value)
        push(pandas_backend, FRAMES[0][1](), task_id=f"frame_{value}")
        push(json_backend, {"compressed": "x" * 100}, task_id=f"json_{value}")

    store = open_store("s3", bucket)
    objects = list(store.list("xcom/"))
    assert len(objects) > 100
    found = {
        item.key: problems for item in objects if (problems := stored_pickles(item.key, store.get(item.key)))
    }
    assert found == {}


# --- no secret in references, messages or logs ---------------------------------------------------------


def no_secret_in(texts: list[object], secrets: list[str]) -> None:
    for secret in secrets:
        assert len(secret) >= 8, "a short secret would match by chance"
        for text in map(str, texts):  # a stored value's row is a dict: every key and value
            assert secret not in text, f"a secret ({secret[:3]}…) appears in: {text[:300]}"


def sas_token(local_stores, container: str, **permissions: bool) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    azurite = local_stores.azurite
    return generate_container_sas(
        account_name=azurite.account_name,
        container_name=container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(**permissions),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


def sas_secrets(token: str) -> list[str]:
    """The token, and its signature as sent (URL-encoded) and as decoded."""
    signature = urllib.parse.parse_qs(token)["sig"][0]
    return [token, signature, urllib.parse.quote(signature, safe="")]


def sas_connection(local_stores, token: str) -> str:
    azurite = local_stores.azurite
    conn = {"conn_type": "wasb", "host": azurite.blob_endpoint, "login": azurite.account_name}
    return json.dumps(conn | {"extra": {"sas_token": token}})


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # Each logger explicitly: a hook or an earlier test may have raised a library logger's level.
    for name in ("", "azure", "azure.core.pipeline.policies.http_logging_policy", "botocore", "include"):
        caplog.set_level(logging.INFO, logger=name)
    return caplog


@pytest.mark.stores
def test_s3_password_never_shows(local_stores, use_new_bucket, monkeypatch, captured, reset_stores):
    cls, bucket = use_new_bucket("s3")
    secret = local_stores.seaweedfs.secret_key
    stored = push(cls, {"ok": True})
    assert pull(cls, stored) == {"ok": True}

    monkeypatch.setenv(bucket_var("s3"), unique_bucket_name())
    reset_stores()
    with pytest.raises(XComBucketNotFound) as missing:
        push(cls, 1)
    wrong = local_stores.seaweedfs.airflow_connection() | {"password": "wrong-" + secret[::-1]}
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps(wrong))
    monkeypatch.setenv(bucket_var("s3"), bucket)
    reset_stores()
    with pytest.raises(XComAccessDenied) as denied_push:
        push(cls, 1)
    with pytest.raises(XComAccessDenied) as denied_pull:
        pull(cls, stored)

    assert f"connection '{S3_CONN_ID}'" in str(denied_push.value)
    texts = [stored, captured.text] + [str(e.value) for e in (missing, denied_push, denied_pull)]
    assert "stored as xcom_s3://" in captured.text, "the log lines were captured"
    no_secret_in(texts, [secret, wrong["password"]])


@pytest.mark.stores
def test_minio_secret_key_never_shows(local_stores, use_new_bucket, monkeypatch, captured, reset_stores):
    cls, bucket = use_new_bucket("minio")
    secret = local_stores.seaweedfs.secret_key
    stored = push(cls, [1])
    monkeypatch.setenv("MINIO_SECRET_KEY", "wrong-" + secret[::-1])
    reset_stores()
    with pytest.raises(XComAccessDenied) as denied:
        pull(cls, stored)
    no_secret_in([stored, str(denied.value), captured.text], [secret, "wrong-" + secret[::-1]])


@pytest.mark.stores
def test_azure_sas_token_never_shows(
    local_stores, new_bucket, use_new_bucket, monkeypatch, captured, reset_stores
):
    cls, container = use_new_bucket("wasb")
    token = sas_token(local_stores, container, read=True, write=True, create=True, delete=True, list=True)
    monkeypatch.setenv(f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", sas_connection(local_stores, token))
    reset_stores()

    stored = push(cls, {"via": "sas"})
    assert pull(cls, stored) == {"via": "sas"}
    store, reference = store_of(stored)
    store.delete(reference.key)
    with pytest.raises(XComObjectNotFound) as gone:
        pull(cls, stored)
    # The token is for this container only: another one is refused, and the message must say so
    # without repeating the signed URL the SDK sent.
    monkeypatch.setenv(bucket_var("wasb"), new_bucket("wasb"))
    reset_stores()
    with pytest.raises(XComAccessDenied) as refused:
        push(cls, {"via": "sas"})

    assert "Request URL" in captured.text, "azure-core's request log lines were captured"
    no_secret_in([stored, str(gone.value), str(refused.value), captured.text], sas_secrets(token))


@pytest.mark.stores
@pytest.mark.e2e
def test_task_log_shows_no_sas_token_when_a_push_succeeds_and_a_pull_is_refused(
    airflow_db, local_stores, new_bucket, tmp_path
):
    """A write-only token: the producer's push succeeds, the consumer's pull is refused (403)."""
    container = new_bucket("wasb")
    token = sas_token(local_stores, container, write=True, create=True)
    home = copy_airflow_home(airflow_db, tmp_path / "airflow-home")
    env = dag_env(
        home,
        local_stores,
        backend=json_backend("wasb"),
        extra={
            bucket_var("wasb"): container,
            f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}": sas_connection(local_stores, token),
        },
    )
    result = run_test_dag("xcom_pair", env, conf={"payload": "signed"})

    assert result.state == "failed", result.output
    assert re.search(
        r"XCom of task xcom_pair\.produce, key 'return_value' stored as xcom_wasb://", result.output
    )
    assert f"Access to XCom bucket '{container}' was refused" in result.output, result.output
    no_secret_in([result.output], sas_secrets(token))


def test_env_file_is_never_committed():
    """Beyond test_project_layout's check of the root .env: no .env file anywhere is tracked."""
    tracked = subprocess.run(
        ["git", "ls-files", "--", ".env", "**/.env", "*.env"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert tracked.stdout.split() == []


# --- object keys cannot leave the prefix -----------------------------------------------------------------

HOSTILE_IDS = [
    "../../../etc/passwd",
    "..",
    ".",
    "a/../../b",
    "/absolute",
    "trailing/",
    "back\\slash\\..\\up",
    "%2e%2e%2f",
    "nul\x00byte",
    "new\nline\rreturn\ttab",
    "\x1b[31mansi",
    "\u202eright-to-left",
    "",
    "~",
    "a~2Fb",
    "x" * 400,
]
SEGMENT = re.compile(r"[A-Za-z0-9_.~-]+")


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=lambda s: repr(s)[:24])
def test_hostile_ids_become_one_safe_segment_each(hostile):
    key = object_key(
        "xcom", dag_id=hostile, run_id=hostile, task_id=hostile, map_index=-1, key=hostile, extension=".json"
    )
    segments = key.split("/")
    assert segments[0] == "xcom" and len(segments) == 7, key
    for segment in segments:
        assert SEGMENT.fullmatch(segment) and segment not in (".", ".."), (hostile, segment)
    assert len(key.encode()) < 1024, "S3 and GCS limit keys to 1,024 bytes"


def test_distinct_ids_never_share_a_segment():
    encoded = [encode_component(value) for value in HOSTILE_IDS + ["a/b", "a_b", "a.b", "A/B"]]
    assert len(set(encoded)) == len(encoded)


@pytest.mark.stores
def test_hostile_task_id_and_key_round_trip_inside_the_prefix(use_new_bucket):
    cls, bucket = use_new_bucket("s3")
    stored = push(cls, {"safe": True}, task_id="../../outside", key="../\x00/../evil", dag_id="../dag")
    reference = Reference.parse(stored)
    assert reference is not None and reference.key.startswith("xcom/")
    assert pull(cls, stored) == {"safe": True}
    everything = [item.key for item in open_store("s3", bucket).list("")]
    assert everything == [reference.key], "the only object is the one under the prefix"
