"""The ways of passing a frame that are timed: push returns a handle, pull reads the value back from
it, cleanup removes the object."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from unittest import mock

from include.xcom_backend.registry import TABLE
from tools.bench.config import COMMONIO_GCS_CONN, FRAME_FORMAT, PARQUET_TYPE, StoreSpec
from tools.servers.fake_gcs import PROJECT as FAKE_GCS_PROJECT

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """No INFO records for the block: the backend logs every push, the SDKs every request and deletion,
    thousands of lines that would cost time inside the measurements and bury the results."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def import_path(path: str) -> Any:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class Unavailable(Exception):
    """A method that cannot run in this environment; the message says why."""


def xcom_ids() -> dict[str, Any]:
    return {
        "key": "return_value",
        "task_id": "extract",
        "dag_id": "bench",
        "run_id": f"bench__{uuid.uuid4().hex[:8]}",
        "map_index": -1,
    }


def delete_object(store: Any, key: str) -> None:
    """Delete one object, untimed. GCS through the SDK: GCSHook.delete logs each deletion outside the
    logging module's control, which would bury the results."""
    from include.xcom_backend.stores import GCSStore

    if isinstance(store, GCSStore):
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            store.hook.get_conn().bucket(store.bucket).blob(key).delete()
    else:
        store.delete(key)


class Method:
    """One way of passing a frame from a task to the next."""

    def configured(self) -> contextlib.AbstractContextManager[Any]:
        """Settings entered around the timed calls, outside the timing."""
        return contextlib.nullcontext()

    def push(self, frame: pd.DataFrame) -> Any:
        raise NotImplementedError

    def pull(self, handle: Any) -> Any:
        raise NotImplementedError

    def cleanup(self, handle: Any) -> None:
        """Remove what push stored (untimed)."""


class BackendMethod(Method):
    """An XCom backend class called as Airflow calls it: serialize_value, then deserialize_value."""

    def __init__(self, backend: Any, env: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.env = env or {}

    def configured(self) -> contextlib.AbstractContextManager[Any]:
        return mock.patch.dict(os.environ, self.env)

    def push(self, frame: pd.DataFrame) -> Any:
        return self.backend.serialize_value(frame, **xcom_ids())

    def pull(self, handle: Any) -> Any:
        return self.backend.deserialize_value(SimpleNamespace(value=handle))

    def cleanup(self, handle: Any) -> None:
        from include.xcom_backend.reference import Reference
        from include.xcom_backend.stores import STORES

        reference = Reference.parse(handle)
        if reference is not None:
            delete_object(STORES[reference.scheme](reference.bucket), reference.key)


class FloorMethod(Method):
    """The frame's Parquet bytes, encoded beforehand, put and got with the adapter's bare SDK call
    (``_put``/``_get``, which the backend wraps with its checks, error mapping and retries): what the
    store and its SDK cost without the backend's code, whichever store the table names."""

    def __init__(self, spec: StoreSpec, bucket: str, parquet: bytes) -> None:
        from include.xcom_backend.stores import STORES

        self.parquet = parquet
        self.store: Any = STORES[spec.row.scheme](bucket)

    def push(self, frame: pd.DataFrame) -> Any:
        key = f"bench-floor/{uuid.uuid4().hex}.parquet"
        self.store._put(key, self.parquet, PARQUET_TYPE, {})
        return key

    def pull(self, handle: Any) -> Any:
        return self.store._get(handle)

    def cleanup(self, handle: Any) -> None:
        delete_object(self.store, handle)


def _commonio_backend() -> Any:
    from airflow.providers.common.io.xcom import backend

    return backend


def _clear_commonio_caches() -> None:
    # common.io reads its path, threshold and compression once per process (functools.cache); the
    # benchmark points it at one store after another.
    module = _commonio_backend()
    for name in ("_get_base_path", "_get_threshold", "_get_compression"):
        cache_clear = getattr(getattr(module, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


class HandwrittenMethod(FloorMethod):
    """What a user writes without a backend: ``df.to_parquet()`` with pandas' defaults, put with the
    floor's client, got back and read with ``pd.read_parquet``."""

    def __init__(self, spec: StoreSpec, bucket: str) -> None:
        super().__init__(spec, bucket, b"")

    def push(self, frame: pd.DataFrame) -> Any:
        key = f"bench-handwritten/{uuid.uuid4().hex}.parquet"
        self.store._put(key, frame.to_parquet(), PARQUET_TYPE, {})
        return key

    def pull(self, handle: Any) -> Any:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.store._get(handle)))


class CommonIOMethod(Method):
    """Airflow's common.io XComObjectStorageBackend on an fsspec path of the store, threshold 0."""

    def __init__(self, spec: StoreSpec, bucket: str) -> None:
        self.env: dict[str, str] = {
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD": "0",
            # Empty means no compression to common.io.
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_COMPRESSION": "",
        }
        if spec.commonio == "gs":
            # gcsfs reads STORAGE_EMULATOR_HOST only when first imported; an endpoint in the
            # connection works whatever was imported before.
            conn = COMMONIO_GCS_CONN
            extra = {
                "is_anonymous": True,
                "project": FAKE_GCS_PROJECT,
                # The local servers' environment names the endpoint (what GCSHook's client reads).
                "gcs.endpoint": os.environ["STORAGE_EMULATOR_HOST"],
            }
            connection = {"conn_type": "google_cloud_platform", "extra": extra}
            self.env[f"AIRFLOW_CONN_{conn.upper()}"] = json.dumps(connection)
        else:
            # The store's own connection; a store without one (MinIO) borrows the S3 store's, which
            # points at the same server. adlfs reaches Azurite only through the connection-string
            # form, which the Azure connection has.
            conn = spec.row.options.get("conn_id", TABLE["s3"].options["conn_id"]).default
        self.env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH"] = (
            f"{spec.commonio}://{conn}@{bucket}/commonio"
        )

    @contextlib.contextmanager
    def configured(self) -> Iterator[None]:
        with mock.patch.dict(os.environ, self.env):
            _clear_commonio_caches()
            try:
                yield
            finally:
                _clear_commonio_caches()

    def push(self, frame: pd.DataFrame) -> Any:
        return _commonio_backend().XComObjectStorageBackend.serialize_value(frame, **xcom_ids())

    def pull(self, handle: Any) -> Any:
        return _commonio_backend().XComObjectStorageBackend.deserialize_value(SimpleNamespace(value=handle))

    def cleanup(self, handle: Any) -> None:
        _commonio_backend().XComObjectStorageBackend.purge(SimpleNamespace(value=handle))


class CodecMethod(Method):
    """The default frame format's encode and decode only, as the backend does them, with no store:
    a reference line."""

    def __init__(self) -> None:
        from include.xcom_backend.codecs import FRAME_CODECS

        self.codec = FRAME_CODECS[FRAME_FORMAT]

    def push(self, frame: pd.DataFrame) -> Any:
        return self.codec.encode(frame).data

    def pull(self, handle: Any) -> Any:
        return self.codec.decode(handle)


def check_commonio(spec: StoreSpec) -> None:
    """Raise Unavailable, saying why, when common.io's backend cannot run against this store here."""
    if spec.commonio is None:
        raise Unavailable("no fsspec filesystem for this store")
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(spec.commonio)
    except ImportError as exc:
        raise Unavailable(str(exc)) from None
    if spec.commonio == "gs" and "Extended" in cls.__name__:
        raise Unavailable(
            "gcsfs was imported with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT on, whose gRPC calls time out "
            "against fake-gcs-server; run with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false"
        )


def describe_error(exc: BaseException) -> str:
    """The exception's type and first line, for the "not measured" list."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def check_value(method: str, frame: pd.DataFrame, value: Any, parquet: bytes) -> str | None:
    """Whether the method brought the frame back (checked on the untimed warm-up): None, or what differs."""
    import pandas as pd

    if method == "floor":
        return None if value == parquet else "the bytes read back differ from those written"
    if method == "csv":
        # Lossy by design (dtypes are re-inferred): the shape and the numbers must survive.
        same = value.shape == frame.shape and bool((value["id"].to_numpy() == frame["id"].to_numpy()).all())
        return None if same else "the frame read back differs in shape or content"
    try:
        pd.testing.assert_frame_equal(frame, value, check_exact=True)
    except AssertionError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def freeze_heap() -> None:
    """Move everything alive now out of the collector's sight.

    Airflow and the SDKs leave millions of objects: a full collection takes a third of a second, which
    would land inside some timings and makes collecting before each run slow. Undone by `gc.unfreeze`.
    """
    gc.collect()
    gc.freeze()


def time_once(method: Method, frame: pd.DataFrame) -> tuple[float, float, Any]:
    """Seconds of one push and one pull, and the value pulled."""
    gc.collect()  # a collection triggered inside the timing by earlier garbage would be noise
    with method.configured():
        began = time.perf_counter()
        handle = method.push(frame)
        pushed = time.perf_counter()
        value = method.pull(handle)
        pulled = time.perf_counter()
        method.cleanup(handle)
    return pushed - began, pulled - pushed, value
