"""Each store's own server-side encryption, applied on upload as its options say (issue 12, part 3).

Where the local server implements a setting, the object's metadata must say it is encrypted:
SeaweedFS keeps SSE-S3 (AES256) for the S3 and MinIO backends. Where it refuses or ignores one
(SeaweedFS runs without a KMS here, fake-gcs-server drops `kmsKeyName`, Azurite ignores encryption
scopes), the request as the SDK sent it to the real server must carry it: botocore's `before-send`
event, the minio SDK's trace of what it hands urllib3, the requests session under the Google client,
and the Azure storage SDK's `raw_request_hook`. Unset options add nothing to an upload; a bad value
is a ValueError naming the option, raised before any request.
"""

from __future__ import annotations

import contextlib
import io
import os
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from include.xcom_backend import XComStorageError
from include.xcom_backend.registry import open_store
from include.xcom_backend.settings import OPTIONS
from include.xcom_backend.stores.base import ObjectStore
from tests.support.schemes import SERVED
from tests.support.xcom_calls import pull, push, store_of

GCS_KEY = "projects/xcom-tests/locations/europe-west1/keyRings/xcom/cryptoKeys/xcom-values"
AZURE_SCOPE = "xcomvalues"
KMS_KEY_ID = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VALUE = {"rows": [1, 2, 3], "note": "encrypted at rest"}  # ASCII: the minio SDK's trace prints bodies


@dataclass(frozen=True)
class Sent:
    """One HTTP request as the SDK handed it to its transport."""

    method: str
    url: str
    headers: dict[str, str]  # lower-case names

    @classmethod
    def of(cls, method: str, url: str, headers: Any) -> Sent:
        text = {str(k).lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in headers.items()}
        return cls(method.upper(), url, text)


# --- what each SDK sent -----------------------------------------------------------------------------


@contextlib.contextmanager
def _botocore_requests(store: Any) -> Iterator[list[Sent]]:
    sent: list[Sent] = []

    def record(request: Any, **_: Any) -> None:  # returning None lets botocore send it
        sent.append(Sent.of(request.method, request.url, request.headers))

    events = store.client.meta.events
    events.register("before-send.s3", record)
    try:
        yield sent
    finally:
        events.unregister("before-send.s3", record)


@contextlib.contextmanager
def _minio_requests(store: Any) -> Iterator[list[Sent]]:
    sent: list[Sent] = []
    trace = io.StringIO()
    store.client.trace_on(trace)
    try:
        yield sent
    finally:
        store.client.trace_off()
        sent += _parse_minio_trace(trace.getvalue())


def _parse_minio_trace(text: str) -> list[Sent]:
    """The requests of the SDK's trace: a request line, then its headers up to the first empty line."""
    requests = []
    for block in text.split("---------START-HTTP---------\n")[1:]:
        request_line, *lines = block.splitlines()
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            if not line:
                break
            name, _, header = line.partition(": ")
            headers[name] = header
        requests.append(Sent.of(method, path, headers))
    return requests


@contextlib.contextmanager
def _google_requests(store: Any) -> Iterator[list[Sent]]:
    sent: list[Sent] = []

    def record(response: Any, *_: Any, **__: Any) -> None:
        request = response.request  # the PreparedRequest requests sent
        sent.append(Sent.of(request.method, request.url, request.headers))

    hooks = store.hook.get_conn()._http.hooks["response"]
    hooks.append(record)
    try:
        yield sent
    finally:
        hooks.remove(record)


@contextlib.contextmanager
def _azure_requests(store: Any) -> Iterator[list[Sent]]:
    # The storage SDK's own request-hook policy: it calls `raw_request_hook` (a client or per-call
    # option) with every request, headers set, just before signing and sending.
    from azure.storage.blob._shared.policies import StorageRequestHook

    sent: list[Sent] = []

    def record(request: Any) -> None:
        http = request.http_request
        sent.append(Sent.of(http.method, http.url, http.headers))

    # The service client's pipeline policies are shared by the blob clients WasbHook makes; the
    # pipeline runs a SansIO policy through a wrapper holding it as `_policy`.
    client = store.hook.blob_service_client
    policies = [getattr(p, "_policy", p) for p in client._pipeline._impl_policies]
    (policy,) = [p for p in policies if isinstance(p, StorageRequestHook)]
    previous, policy._request_callback = policy._request_callback, record
    try:
        yield sent
    finally:
        policy._request_callback = previous


def _amz_encryption(request: Sent) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.startswith("x-amz-server-side-encryption")}


def _gcs_encryption(request: Sent) -> dict[str, str]:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    return {k: v[0] for k, v in query.items() if k == "kmsKeyName"}


def _azure_encryption(request: Sent) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k == "x-ms-encryption-scope"}


@dataclass(frozen=True)
class StoreEncryption:
    record: Callable[[Any], contextlib.AbstractContextManager[list[Sent]]]
    encryption: Callable[[Sent], dict[str, str]]
    """The encryption an upload request asks for, in the API's own terms."""


STORES = {
    "s3": StoreEncryption(_botocore_requests, _amz_encryption),
    "minio": StoreEncryption(_minio_requests, _amz_encryption),
    "gcs": StoreEncryption(_google_requests, _gcs_encryption),
    "wasb": StoreEncryption(_azure_requests, _azure_encryption),
}


def test_every_served_store_has_an_encryption_case() -> None:
    assert set(STORES) == set(SERVED)


def _set(monkeypatch: pytest.MonkeyPatch, options: dict[str, str]) -> None:
    for key, text in options.items():
        monkeypatch.setenv(OPTIONS[key].env_var, text)


def _uploads(sent: list[Sent]) -> list[Sent]:
    # A push writes one object and nothing else: one PUT, or on GCS the POST that opens a resumable
    # upload; the bytes then go to that upload's session (`upload_id`), which names no settings.
    return [
        request
        for request in sent
        if request.method in ("PUT", "POST")
        and "upload_id" not in urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    ]


def _push_recorded(
    scheme: str, use_new_bucket: Callable[[str], tuple[Any, str]]
) -> tuple[Any, Any, list[Sent]]:
    """The backend, what the push left in the DB, and the requests the push sent."""
    backend, bucket = use_new_bucket(scheme)
    store = open_store(scheme, bucket)
    with STORES[scheme].record(store) as sent:
        stored = push(backend, VALUE)
    return backend, stored, sent


# --- against the local servers ----------------------------------------------------------------------

served = pytest.mark.usefixtures("local_stores", "xcom_table")


@served
@pytest.mark.stores
@pytest.mark.parametrize("scheme", SERVED)
def test_unset_options_add_nothing_to_the_upload(scheme: str, use_new_bucket: Any) -> None:
    backend, stored, sent = _push_recorded(scheme, use_new_bucket)
    (upload,) = _uploads(sent)
    assert STORES[scheme].encryption(upload) == {}
    assert pull(backend, stored) == VALUE


def _s3_reports(store: Any, key: str) -> dict[str, str]:
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    return {"x-amz-server-side-encryption": head["ServerSideEncryption"]}


def _minio_reports(store: Any, key: str) -> dict[str, str]:
    metadata = store.client.stat_object(store.bucket, key).metadata
    return {"x-amz-server-side-encryption": metadata["x-amz-server-side-encryption"]}


# scheme, options, what the upload asks for, what the server reports (None: the server ignores it)
ENCRYPTED = [
    pytest.param(
        "s3", {"s3_sse": "AES256"}, {"x-amz-server-side-encryption": "AES256"}, _s3_reports, id="s3-sse-s3"
    ),
    pytest.param(
        "minio",
        {"minio_sse": "aes256"},  # any case
        {"x-amz-server-side-encryption": "AES256"},
        _minio_reports,
        id="minio-sse-s3",
    ),
    pytest.param("gcs", {"gcs_kms_key_name": GCS_KEY}, {"kmsKeyName": GCS_KEY}, None, id="gcs-cmek"),
    pytest.param(
        "wasb",
        {"wasb_encryption_scope": AZURE_SCOPE},
        {"x-ms-encryption-scope": AZURE_SCOPE},
        None,
        id="wasb-encryption-scope",
    ),
]


@served
@pytest.mark.stores
@pytest.mark.parametrize(("scheme", "options", "asked", "reports"), ENCRYPTED)
def test_upload_asks_for_the_configured_encryption(
    scheme: str,
    options: dict[str, str],
    asked: dict[str, str],
    reports: Callable[[Any, str], dict[str, str]] | None,
    use_new_bucket: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, options)
    backend, stored, sent = _push_recorded(scheme, use_new_bucket)
    (upload,) = _uploads(sent)
    assert STORES[scheme].encryption(upload) == asked
    if reports is not None:  # the server implements it: the object says it is encrypted
        store, reference = store_of(stored)
        assert reports(store, reference.key) == asked
    # Reading needs no setting: the server decrypts for whoever may read the object.
    monkeypatch.delenv(OPTIONS[next(iter(options))].env_var)
    assert pull(backend, stored) == VALUE


# The local SeaweedFS has no KMS: it refuses SSE-KMS uploads, so only the request can be checked.
KMS = [
    pytest.param(
        "s3",
        {"s3_sse": "aws:kms", "s3_sse_kms_key_id": KMS_KEY_ID},
        {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": KMS_KEY_ID,
        },
        id="s3-sse-kms-key",
    ),
    pytest.param(
        "s3",
        {"s3_sse": "aws:kms"},  # the account's AWS managed key
        {"x-amz-server-side-encryption": "aws:kms"},
        id="s3-sse-kms-managed-key",
    ),
    pytest.param(
        "minio",
        {"minio_sse": "aws:kms", "minio_sse_kms_key_id": "xcom-key"},
        {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": "xcom-key",
        },
        id="minio-sse-kms",
    ),
]


@served
@pytest.mark.stores
@pytest.mark.parametrize(("scheme", "options", "asked"), KMS)
def test_sse_kms_upload_carries_the_mode_and_key(
    scheme: str,
    options: dict[str, str],
    asked: dict[str, str],
    use_new_bucket: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, options | {"attempts": "1"})
    backend, bucket = use_new_bucket(scheme)
    store = open_store(scheme, bucket)
    with STORES[scheme].record(store) as sent, pytest.raises(XComStorageError):
        push(backend, VALUE)
    (upload,) = _uploads(sent)
    assert STORES[scheme].encryption(upload) == asked
    assert list(store.list("")) == []  # refused, not stored unencrypted


# --- bad values: errors naming the option, before any request ---------------------------------------

BAD = [
    pytest.param("s3", {"s3_sse": "AES128"}, "S3_SSE must be AES256 or aws:kms", id="s3-unknown-mode"),
    pytest.param("s3", {"s3_sse": "sse-c"}, "S3_SSE must be AES256 or aws:kms", id="s3-sse-c"),
    pytest.param(
        "s3", {"s3_sse_kms_key_id": KMS_KEY_ID}, "S3_SSE_KMS_KEY_ID names a KMS key", id="s3-key-without-kms"
    ),
    pytest.param(
        "s3",
        {"s3_sse": "AES256", "s3_sse_kms_key_id": KMS_KEY_ID},
        "S3_SSE_KMS_KEY_ID names a KMS key",
        id="s3-key-with-sse-s3",
    ),
    pytest.param(
        "minio", {"minio_sse": "kms"}, "MINIO_SSE must be AES256 or aws:kms", id="minio-unknown-mode"
    ),
    pytest.param(
        "minio",
        {"minio_sse": "aws:kms"},
        "needs AIRFLOW__XCOM_BACKEND__MINIO_SSE_KMS_KEY_ID",
        id="minio-kms-no-key",
    ),
    pytest.param(
        "gcs",
        {"gcs_kms_key_name": "xcom-values"},
        "GCS_KMS_KEY_NAME must be a Cloud KMS key name",
        id="gcs-bare-name",
    ),
    pytest.param(
        "gcs",
        {"gcs_kms_key_name": f"{GCS_KEY}/cryptoKeyVersions/1"},
        "GCS_KMS_KEY_NAME must be a Cloud KMS key name",
        id="gcs-key-version",
    ),
]


@pytest.mark.parametrize(("scheme", "options", "message"), BAD)
def test_bad_encryption_setting_is_an_error_naming_it(
    scheme: str, options: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No server: a request would fail differently (no connection, nothing listening on port 9).
    monkeypatch.setenv("MINIO_IP", "127.0.0.1:9")
    _set(monkeypatch, options | {"attempts": "1"})
    store: ObjectStore = open_store(scheme, "xcom-encryption-bad-value")
    with pytest.raises(ValueError, match=message) as raised:
        store.put("xcom/k.json", b"{}", content_type="application/json", metadata={})
    assert type(raised.value) is ValueError, "a settings error, not a store failure"
    assert f"AIRFLOW__XCOM_BACKEND__{next(iter(options)).upper()}" in str(raised.value)


@pytest.mark.stores
@pytest.mark.usefixtures("local_stores")
def test_s3_multipart_upload_is_encrypted_too(
    new_bucket: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Above the single-PUT limit the adapter uploads in parts (upload_fileobj), with its own arguments.
    from include.xcom_backend.stores.s3 import _SINGLE_PUT_LIMIT

    _set(monkeypatch, {"s3_sse": "AES256"})
    store = open_store("s3", new_bucket("s3"))
    data = os.urandom(_SINGLE_PUT_LIMIT + 1)
    with _botocore_requests(store) as sent:
        store.put("xcom/large.bin", data, content_type="application/octet-stream", metadata={})
    (create,) = [r for r in sent if r.method == "POST" and r.url.endswith("?uploads")]
    assert _amz_encryption(create) == {"x-amz-server-side-encryption": "AES256"}
    assert (
        store.client.head_object(Bucket=store.bucket, Key="xcom/large.bin")["ServerSideEncryption"]
        == "AES256"
    )
    assert store.get("xcom/large.bin") == data
