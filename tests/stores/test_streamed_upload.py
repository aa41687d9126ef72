"""The streamed upload (include/xcom_backend/upload.py) on every store's real local server: bytes
encoded while they upload, in parts, one plain PUT when they fit in one part, and no object left
behind when the upload fails half way."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from include.xcom_backend import XComObjectNotFound, XComStorageError
from include.xcom_backend.registry import TABLE, open_store
from include.xcom_backend.stores.base import ObjectStore
from include.xcom_backend.upload import PartSink, stream_upload
from tests.stores.test_encryption import STORES as ENCRYPTION
from tests.support.schemes import SERVED
from tests.support.xcom_calls import load, pull, push, store_of

pytestmark = [pytest.mark.stores, pytest.mark.usefixtures("local_stores")]

PART = 5 * 1024 * 1024  # S3's smallest part, and a multiple of GCS's 256 KiB
PIECE = 1_000_003  # the encoder writes pieces that do not line up with the parts
SIZES = {"half-a-part": PART // 2, "one-part": PART, "several-parts": 3 * PART + 12_345}


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    for scheme in SERVED:
        monkeypatch.setattr(TABLE[scheme].adapter_class(), "part_size", PART)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many single PUTs and parts uploads each store's adapter made (the real calls run)."""
    counted = {"_put": 0, "_put_parts": 0}
    for scheme in SERVED:
        cls = TABLE[scheme].adapter_class()
        for name in counted:
            real = getattr(cls, name)

            def counting(self: Any, *args: Any, _real: Any = real, _name: str = name) -> Any:
                counted[_name] += 1
                return _real(self, *args)

            monkeypatch.setattr(cls, name, counting)
    return counted


def _writer(data: bytes, fail_after: int | None = None) -> Callable[[PartSink], None]:
    def write(sink: PartSink) -> None:
        for start in range(0, len(data), PIECE):
            if fail_after is not None and start >= fail_after:
                raise RuntimeError("the encoder broke")
            sink.write(data[start : start + PIECE])

    return write


def _pending_uploads(store: Any, key: str) -> list[Any]:
    """Unfinished multipart uploads under ``key`` (S3 API stores only)."""
    if store.scheme == "s3":
        return store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", [])
    if store.scheme == "minio":
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=store.endpoint,
            aws_access_key_id=os.environ["MINIO_ACCESS_KEY"],
            aws_secret_access_key=os.environ["MINIO_SECRET_KEY"],
            region_name="us-east-1",
        )
        return client.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", [])
    return []


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("scheme", SERVED)
def test_streamed_bytes_round_trip_in_one_put_or_in_parts(
    scheme: str, size: int, new_bucket: Callable[[str], str], calls: dict[str, int]
) -> None:
    store = open_store(scheme, new_bucket(scheme))
    data = os.urandom(size)
    uploaded, kept = stream_upload(store, "xcom/streamed.bin", "application/octet-stream", _writer(data))
    assert (uploaded.size, uploaded.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert kept is None
    assert store.get("xcom/streamed.bin") == data
    several = size > PART
    assert calls == {"_put": 0 if several else 1, "_put_parts": 1 if several else 0}
    if several and scheme in ("s3", "minio"):  # the S3 API marks a multipart object's ETag "-<parts>"
        etag = open_store("s3", store.bucket).client.head_object(Bucket=store.bucket, Key="xcom/streamed.bin")
        assert etag["ETag"].strip('"').endswith("-4")
    if several and scheme == "wasb":
        blob = store.hook.blob_service_client.get_blob_client(store.bucket, "xcom/streamed.bin")
        assert len(blob.get_block_list("committed")[0]) == 4


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("scheme", SERVED)
def test_encoder_failing_half_way_leaves_no_object(scheme: str, new_bucket: Callable[[str], str]) -> None:
    store = open_store(scheme, new_bucket(scheme))
    data = os.urandom(4 * PART)
    with pytest.raises(RuntimeError, match="the encoder broke"):
        stream_upload(store, "xcom/broken.bin", "application/octet-stream", _writer(data, 2 * PART + 1))
    assert list(store.list("xcom/")) == []
    with pytest.raises(XComObjectNotFound):
        store.get("xcom/broken.bin")
    assert _pending_uploads(store, "xcom/") == []  # aborted, not left for the lifecycle rule


def _frame(rows: int) -> pd.DataFrame:
    from tools.bench.data import make_frame

    return make_frame(rows)


@pytest.mark.usefixtures("small_parts", "xcom_table")
@pytest.mark.parametrize("scheme", SERVED)
def test_pandas_frame_is_encoded_into_parts_and_reads_back(
    scheme: str, use_new_bucket: Callable[[str], tuple[Any, str]], calls: dict[str, int]
) -> None:
    use_new_bucket(scheme)
    backend = load(TABLE[scheme].pandas_backend or "")
    frame = _frame(300_000)  # about 11 MB of Parquet: three parts
    stored = push(backend, frame)
    assert calls["_put_parts"] == 1
    store, reference = store_of(stored)
    assert hashlib.sha256(store.get(reference.key)).hexdigest() == reference.sha256
    pd.testing.assert_frame_equal(pull(backend, stored), frame)


def _break_part(monkeypatch: pytest.MonkeyPatch, scheme: str, number: int) -> None:
    """Part ``number`` goes to an upload id the server never issued: the real server refuses it."""
    cls = TABLE[scheme].adapter_class()
    real = cls._put_part

    def put_part(self: ObjectStore, key: str, upload_id: str, n: int, data: bytes) -> Any:
        return real(self, key, "no-such-upload" if n == number else upload_id, n, data)

    monkeypatch.setattr(cls, "_put_part", put_part)


@pytest.mark.usefixtures("small_parts", "xcom_table")
@pytest.mark.parametrize("scheme", ["s3", "minio"])
def test_a_part_the_store_refuses_aborts_the_push(
    scheme: str, use_new_bucket: Callable[[str], tuple[Any, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, bucket = use_new_bucket(scheme)
    backend = load(TABLE[scheme].pandas_backend or "")
    _break_part(monkeypatch, scheme, 2)
    store = open_store(scheme, bucket)
    began = time.monotonic()
    with pytest.raises(XComStorageError) as raised:
        push(backend, _frame(300_000), dag_id="broken")
    assert time.monotonic() - began < store.failure_bound + 30  # bounded: no waiting on a dead upload
    assert bucket in str(raised.value)
    assert list(store.list("")) == [], "no object: no row can point at one"
    assert _pending_uploads(store, "") == []


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize(
    ("scheme", "option", "text", "asked"),
    [
        ("s3", "s3_sse", "AES256", {"x-amz-server-side-encryption": "AES256"}),
        ("minio", "minio_sse", "AES256", {"x-amz-server-side-encryption": "AES256"}),
        (
            "gcs",
            "gcs_kms_key_name",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k",
            {"kmsKeyName": "projects/p/locations/l/keyRings/r/cryptoKeys/k"},
        ),
        ("wasb", "wasb_encryption_scope", "xcomvalues", {"x-ms-encryption-scope": "xcomvalues"}),
    ],
)
def test_streamed_upload_asks_for_the_configured_encryption(
    scheme: str,
    option: str,
    text: str,
    asked: dict[str, str],
    new_bucket: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from include.xcom_backend.settings import OPTIONS

    monkeypatch.setenv(OPTIONS[option].env_var, text)
    store = open_store(scheme, new_bucket(scheme))
    data = os.urandom(3 * PART)
    with ENCRYPTION[scheme].record(store) as sent:
        stream_upload(store, "xcom/secret.bin", "application/octet-stream", _writer(data))
    uploads = [r for r in sent if r.method in ("PUT", "POST")]
    assert len(uploads) >= 3, "several parts"
    # The request that creates the upload asks for it (on Azure every block and the commit do).
    asking = uploads if scheme == "wasb" else uploads[:1]
    assert [ENCRYPTION[scheme].encryption(r) for r in asking] == [asked] * len(asking)
    if scheme == "s3":  # SeaweedFS implements SSE-S3: the object says it is encrypted
        head = store.client.head_object(Bucket=store.bucket, Key="xcom/secret.bin")
        assert head["ServerSideEncryption"] == "AES256"
    monkeypatch.delenv(OPTIONS[option].env_var)
    assert store.get("xcom/secret.bin") == data
