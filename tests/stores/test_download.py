"""Downloads stream into the backend's own buffer on every store: the bytes, hashed as they come,
are the object's at every size around a chunk's; a response broken off part way is fetched again
under the retry policy, with a fresh buffer, in bounded time; a frame (Feather or Parquet) read from the
chunks comes back exactly, and a corrupted one names its reference."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from include.xcom_backend import XComIntegrityError, XComStoreUnreachable
from include.xcom_backend.download import CHUNK_BYTES, ChunkedDownload, ContiguousDownload
from include.xcom_backend.registry import open_store
from tests.support.cutting_proxy import CuttingProxy
from tests.support.endpoints import failing_endpoint_env
from tests.support.schemes import SERVED, server_of
from tests.support.xcom_calls import backend_for, pull, push, store_of

pytestmark = [pytest.mark.stores]

SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 12_345]
SINKS = {"chunked": ChunkedDownload, "contiguous": ContiguousDownload}


def _content(download: ChunkedDownload | ContiguousDownload) -> bytes:
    if isinstance(download, ContiguousDownload):
        return download.getvalue()
    return download.file().read()


@pytest.mark.parametrize("scheme", SERVED)
def test_a_download_is_the_object_at_every_size_around_a_chunk(scheme, use_new_bucket):
    _, bucket = use_new_bucket(scheme)
    store = open_store(scheme, bucket)
    for size in SIZES:
        data = os.urandom(size)
        key = f"xcom/download/{size}.bin"
        store.put(key, data, content_type="application/octet-stream", metadata={})
        for name, sink in SINKS.items():
            download = store.download(key, sink)
            assert download.size == size, (scheme, name, size)
            assert download.hexdigest() == hashlib.sha256(data).hexdigest(), (scheme, name, size)
            assert _content(download) == data, (scheme, name, size)


def _through_proxy(scheme, local_stores, monkeypatch, reset_stores, proxy, attempts="3"):
    settings = {
        "AIRFLOW__XCOM_BACKEND__ATTEMPTS": attempts,
        "AIRFLOW__XCOM_BACKEND__CONNECT_TIMEOUT": "2",
        "AIRFLOW__XCOM_BACKEND__READ_TIMEOUT": "5",
    }
    for name, value in {**settings, **failing_endpoint_env(scheme, proxy.port, local_stores)}.items():
        monkeypatch.setenv(name, value)
    reset_stores()


BIG = 3 * CHUNK_BYTES + 777
CUT_AFTER = 1024 * 1024 + 333  # well into the body, whatever the headers


@pytest.mark.parametrize("scheme", SERVED)
def test_a_download_broken_off_part_way_starts_again_and_is_whole(
    scheme, local_stores, use_new_bucket, monkeypatch, reset_stores
):
    _, bucket = use_new_bucket(scheme)
    data = os.urandom(BIG)
    open_store(scheme, bucket).put("xcom/cut.bin", data, content_type="application/octet-stream", metadata={})
    with CuttingProxy(server_of(local_stores, scheme).port, CUT_AFTER, cuts=1) as proxy:
        _through_proxy(scheme, local_stores, monkeypatch, reset_stores, proxy)
        store = open_store(scheme, bucket)
        download = store.download("xcom/cut.bin", ChunkedDownload)
    assert proxy.cut == 1 and proxy.connections >= 2, (proxy.cut, proxy.connections)
    assert download.hexdigest() == hashlib.sha256(data).hexdigest()
    assert _content(download) == data


@pytest.mark.parametrize("scheme", SERVED)
def test_a_download_broken_off_every_time_fails_unreachable_within_the_bound(
    scheme, local_stores, use_new_bucket, monkeypatch, reset_stores
):
    _, bucket = use_new_bucket(scheme)
    open_store(scheme, bucket).put(
        "xcom/cut.bin", os.urandom(BIG), content_type="application/octet-stream", metadata={}
    )
    with CuttingProxy(server_of(local_stores, scheme).port, CUT_AFTER, cuts=None) as proxy:
        _through_proxy(scheme, local_stores, monkeypatch, reset_stores, proxy, attempts="2")
        store = open_store(scheme, bucket)
        began = time.monotonic()
        with pytest.raises(XComStoreUnreachable) as info:
            store.download("xcom/cut.bin", ChunkedDownload)
        seconds = time.monotonic() - began
    assert f"127.0.0.1:{proxy.port}" in str(info.value)
    assert proxy.cut >= store.policy.attempts
    assert seconds <= store.failure_bound, (scheme, seconds, store.failure_bound)


@pytest.mark.usefixtures("xcom_table")
@pytest.mark.parametrize("frame_format", ["feather", "parquet"])
@pytest.mark.parametrize("scheme", SERVED)
def test_a_frame_of_several_batches_round_trips_and_a_corrupted_one_names_its_reference(
    scheme, frame_format, use_new_bucket, monkeypatch
):
    pd = pytest.importorskip("pandas")
    from tools.bench.data import make_frame

    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__PANDAS_FORMAT", frame_format)
    use_new_bucket(scheme)
    cls = backend_for(scheme, pandas=True)
    frame = make_frame(200_000, seed=7)  # sixteen batches (row groups) over eight chunks, some spanning two
    stored = push(cls, frame)
    pd.testing.assert_frame_equal(pull(cls, stored), frame, check_exact=True)

    store, reference = store_of(stored)
    other = push(cls, make_frame(200_000, seed=8))
    _, other_reference = store_of(other)
    store.put(reference.key, store.get(other_reference.key), content_type="x", metadata={})
    with pytest.raises(XComIntegrityError) as info:
        pull(cls, stored)
    assert str(reference) in str(info.value)


def test_azure_joins_its_ranges_from_a_body_stream_without_a_length(use_new_bucket, monkeypatch):
    """azure-core's body stream says its length in bytes, and the SDK's `list()` of it reserved 8 bytes
    per byte of a range (docs/repro/azure_download_list_len.md). The SDK is handed the stream
    without a length, and it still has what it reads from it: the blocks, the range's properties."""
    from include.xcom_backend.stores import wasb

    _, bucket = use_new_bucket("wasb")
    store = open_store("wasb", bucket)
    data = os.urandom(wasb._FIRST_GET + wasb._GET_RANGE + 1)  # three GETs
    store.put("xcom/download/ranges.bin", data, content_type="application/octet-stream", metadata={})
    bodies = []
    unsized_body = wasb._unsized_body

    def recorded(response, obj, headers):
        location_mode, body = unsized_body(response, obj, headers)
        bodies.append(body)
        return location_mode, body

    monkeypatch.setattr(wasb, "_unsized_body", recorded)
    for sink in SINKS.values():
        assert _content(store.download("xcom/download/ranges.bin", sink)) == data
    assert len(bodies) == 6, "one body per GET, for each of the two downloads"
    for body in bodies:
        with pytest.raises(TypeError):
            len(body)
        assert body.properties.etag and body.content_length <= wasb._GET_RANGE
