"""The XCom backend core: a task's return value to the bucket and back, for every cloud.

Push (the producing task calls `serialize_value`):
    value -> codec (JSON, or Feather/Parquet for pandas) -> bytes [-> gzip/zstd] -> sha256
          -> store.put(key, bytes) -> reference "xcom_s3://bucket/key#sha256=…" -> Airflow's DB, in a
          row that also describes the value for the UI (preview.py); a frame is encoded while it
          uploads, in parts, hashed as the bytes pass (upload.py)
Pull (the consuming task calls `deserialize_value` with what the DB holds):
    reference (from the row, or the bare string of older rows)
              -> store.download(key) (chunks into a buffer of ours, hashed as they arrive; the
                 store retries while unreachable) -> verify sha256
              -> [decompress] -> codec chosen by the key's extension -> value
Small values the threshold keeps in the DB are stored as they are, or as JSON text behind a prefix
where a database would change them (database.py). Anything else in the DB that is not a reference
(XComs Airflow writes itself) is handed to Airflow's own deserializer, exactly as without this backend.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from airflow.sdk.bases.xcom import BaseXCom

from include.xcom_backend import database, metrics, preview
from include.xcom_backend.codecs import (
    COMPRESSIONS,
    FRAME_CODECS,
    JSON_CODEC,
    Codec,
    UnknownFormat,
    UnsupportedValue,
    formats_of,
    is_pandas_object,
    type_row,
)
from include.xcom_backend.download import ChunkedDownload, ContiguousDownload, Download
from include.xcom_backend.errors import (
    XComIntegrityError,
    XComObjectNotFound,
    XComReferenceError,
    XComStorageError,
    XComStoreUnreachable,
)
from include.xcom_backend.reference import (
    LOOKS_LIKE_REFERENCE,
    ROW_KEY,
    Reference,
    looks_like_reference,
    object_key,
)
from include.xcom_backend.registry import open_store
from include.xcom_backend.settings import Settings, threshold_bytes
from include.xcom_backend.stores.base import ObjectStore
from include.xcom_backend.upload import StreamingCodec, stream_upload

log = logging.getLogger(__name__)

_AS_IS = frozenset({int, float, bool, type(None)})
# The JSON of every scalar database.scalar_is_kept accepts is shorter than this.
_SMALL_SCALAR_BYTES = 32


def _describe(dag_id: str | None, task_id: str | None, map_index: int | None, key: str | None) -> str:
    index = f"[{map_index}]" if map_index not in (None, -1) else ""
    return f"task {dag_id}.{task_id}{index}, key {key!r}"


class ObjectStoreXComBackend(BaseXCom):
    """Stores XCom values as objects; subclasses only say which store(s) and whether pandas is on.

    `stores`: the schemes (rows of registry.TABLE) to write to, in order; reads use the store named
    by the reference, and fall back to the others (a mirror). `pandas`: DataFrames and Series go to
    Feather (or Parquet, or CSV: the pandas format setting).
    """

    stores: ClassVar[tuple[str, ...]] = ()
    pandas: ClassVar[bool] = False

    # --- push -----------------------------------------------------------------------------------
    @classmethod
    def serialize_value(
        cls,
        value: Any,
        *,
        key: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> Any:
        if database.scalar_is_kept(value) and threshold_bytes() > _SMALL_SCALAR_BYTES:
            metrics.incr(cls._first_store(), "kept_in_db")
            # Flags and counts: Airflow's serializer returns None, a bool or an int as it is.
            return value
        settings = Settings.from_env()
        codec = cls._codec_for(value, settings)
        where = _describe(dag_id, task_id, map_index, key)
        ids = {
            "dag_id": dag_id or "unknown-dag",
            "run_id": run_id or "unknown-run",
            "task_id": task_id or "unknown-task",
            "map_index": -1 if map_index is None else map_index,
            "key": key or "return_value",
        }
        # The attributes first: a runtime Protocol check costs more than keeping a small value.
        if not codec.in_database and not codec.compressible and isinstance(codec, StreamingCodec):
            # Encoded while it uploads (upload.py): the bytes never exist whole, the sha256 is
            # computed as they pass.
            object_name = object_key(settings.key_prefix, extension=codec.extension, **ids)
            reference, size = cls._push_streamed(codec, value, object_name, where)
        else:
            try:
                data, structure = codec.encode(value)
            except UnsupportedValue as exc:
                raise cls._refusal(value, where, exc) from None
            if codec.in_database and cls._keep_in_database(value, data, settings):
                metrics.incr(cls._first_store(), "kept_in_db")
                return database.stored_form(structure, data)
            extension = codec.extension
            if settings.compression and codec.compressible:
                compression = COMPRESSIONS[settings.compression]
                data = compression.compress(data)
                extension += compression.suffix
            object_name = object_key(settings.key_prefix, extension=extension, **ids)
            reference, size = cls._push_bytes(data, codec.content_type, object_name)
        log.info("XCom of %s stored as %s (%d bytes)", where, reference, size)
        return preview.row(reference, value, size=size, preview=settings.preview)

    @classmethod
    def _refusal(cls, value: Any, where: str, exc: UnsupportedValue) -> TypeError:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        return TypeError(
            f"{cls.__name__} cannot store the XCom of {where}: "
            f"a value of type {kind} is not supported ({exc})"
        )

    @classmethod
    def _push_bytes(cls, data: bytes, content_type: str, object_name: str) -> tuple[Reference, int]:
        checksum = hashlib.sha256(data).hexdigest()
        written: list[ObjectStore] = []
        with metrics.measured("push", cls._first_store()) as measure:
            try:
                for store in cls._write_stores():
                    measure.store = store.scheme
                    store.put(object_name, data, content_type=content_type, metadata={})
                    written.append(store)
            except XComStorageError:
                # A mirror that got only part of the copies would be read inconsistently: undo.
                for store in written:
                    cls._delete_quietly(store, object_name)
                raise
            measure.bytes = len(data)
        return Reference(written[0].scheme, written[0].bucket, object_name, checksum), len(data)

    @classmethod
    def _push_streamed(
        cls, codec: StreamingCodec, value: Any, object_name: str, where: str
    ) -> tuple[Reference, int]:
        first, *mirrors = cls._write_stores()
        content_type = str(getattr(codec, "content_type", "application/octet-stream"))
        with metrics.measured("push", cls._first_store()) as measure:
            measure.store = first.scheme
            try:
                uploaded, parts = stream_upload(
                    first, object_name, content_type, lambda sink: codec.write(value, sink), bool(mirrors)
                )
            except UnsupportedValue as exc:
                raise cls._refusal(value, where, exc) from None
            written = [first]
            try:
                for store in mirrors:  # the copies are sent from the parts the first upload kept
                    measure.store = store.scheme
                    store.put_parts(object_name, iter(parts or []), content_type=content_type, metadata={})
                    written.append(store)
            except XComStorageError:
                for store in written:
                    cls._delete_quietly(store, object_name)
                raise
            measure.bytes = uploaded.size
        return Reference(first.scheme, first.bucket, object_name, uploaded.sha256), uploaded.size

    @classmethod
    def _codec_for(cls, value: Any, settings: Settings) -> Codec:
        if cls.pandas and is_pandas_object(value):
            return FRAME_CODECS[settings.pandas_format]
        if cls.pandas and (row := type_row(value)) is not None and row.codec is not None:
            return row.codec  # numpy, pyarrow, polars, bytes: codecs.TYPES
        return JSON_CODEC  # which refuses those types, naming why

    @staticmethod
    def _keep_in_database(value: Any, data: bytes, settings: Settings) -> bool:
        """Small JSON values may stay in Airflow's DB, except those that would read back as a
        reference (strings like one, dicts like a row). (A pandas backend's frames never reach
        this: their exact dtypes live in the stored file.)"""
        if not settings.threshold_bytes or len(data) >= settings.threshold_bytes:
            return False
        return not looks_like_reference(value)

    # --- pull -----------------------------------------------------------------------------------
    @classmethod
    def deserialize_value(cls, result: Any) -> Any:
        raw = result.value
        if type(raw) in _AS_IS:
            return raw  # what Airflow's deserializer returns for them
        if isinstance(raw, dict) and ROW_KEY in raw:
            reference = Reference.parse(raw)
            if reference is None:
                # Only this backend writes dicts with that key to the DB (user dicts like it are
                # stored as objects), so this is a damaged row, not data.
                raise XComReferenceError(
                    f"XCom row {str(raw)[:200]} has {ROW_KEY!r} but not a reference in this backend's "
                    "format (xcom_<store>://<bucket>/<key>#sha256=<hex>); it cannot be read"
                )
            return cls.read(reference)
        if not isinstance(raw, str):
            return BaseXCom.deserialize_value(result)  # only rows and strings can be references
        wrapped = database.wrapped_json(raw)
        if wrapped is not None:
            try:
                return JSON_CODEC.decode(wrapped)
            except ValueError as exc:
                raise XComReferenceError(
                    f"XCom value {raw[:200]!r} starts with {database.WRAPPED_PREFIX!r}, which marks JSON "
                    f"this backend keeps in the database, but is not valid JSON ({exc}); it cannot be read"
                ) from None
        reference = Reference.parse(raw)
        if reference is None:
            if LOOKS_LIKE_REFERENCE.match(raw):
                # We never keep such strings in the DB ourselves: this is a reference we cannot
                # resolve (e.g. written by the tutorial's backend), not data.
                raise XComReferenceError(
                    f"XCom value {raw[:200]!r} looks like an object-store reference but is not in this "
                    "backend's format (xcom_<store>://<bucket>/<key>#sha256=<hex>); it cannot be read"
                )
            return BaseXCom.deserialize_value(result)
        return cls.read(reference)

    @classmethod
    def read(cls, reference: Reference) -> Any:
        """The value a reference points to, verified against its checksum before it is decoded."""
        try:
            codec, compression = formats_of(reference.key)
        except UnknownFormat as exc:
            raise XComReferenceError(f"XCom reference {reference} cannot be read: {exc}") from None
        # A codec that reads a file (Feather, Parquet) takes the chunks as they are; the others a `bytes`.
        decode_download = None if compression else getattr(codec, "decode_download", None)
        new_sink: Callable[[], Download] = ChunkedDownload if decode_download else ContiguousDownload
        with metrics.measured("pull", reference.scheme) as measure:
            download = cls._fetch(reference, new_sink)
            actual = download.hexdigest()  # computed as the bytes arrived
            if actual != reference.sha256:
                raise XComIntegrityError(str(reference), reference.sha256, actual)
            measure.bytes = download.size
        if decode_download is not None:
            return decode_download(download)
        assert isinstance(download, ContiguousDownload)
        data = download.getvalue()
        del download
        if compression:
            data = compression.decompress(data)
        return codec.decode(data)

    @classmethod
    def _copies(cls, reference: Reference) -> list[ObjectStore]:
        """Where the object may be, in order: the store the reference names, then this backend's
        mirror copies, which exist only when the reference names this backend's first store."""
        first = open_store(reference.scheme, reference.bucket)
        writes = cls._write_stores()
        if (writes[0].scheme, writes[0].bucket) != (first.scheme, first.bucket):
            return [first]  # written by another backend (or bucket): it made no copies
        return [first, *writes[1:]]

    @classmethod
    def _fetch(cls, reference: Reference, new_sink: Callable[[], Download]) -> Download:
        failures: list[str] = []  # of the mirror copies, after the first
        first_error: XComStorageError | None = None
        for store in cls._copies(reference):
            try:
                return store.download(reference.key, new_sink)
            except XComObjectNotFound:
                error: XComStorageError = XComObjectNotFound(str(reference), store.bucket)
            except XComStoreUnreachable as exc:
                error = XComStoreUnreachable(store.endpoint, exc.detail, reference=str(reference))
            if first_error is None:
                first_error = error
            else:
                failures.append(f"the copy at {store.url(reference.key)} failed too: {error}")
        assert first_error is not None
        if failures:  # a mirror: name every store that failed, in the order they were tried
            first_error.args = ("; ".join([str(first_error), *failures]),)
        raise first_error

    # --- cleanup --------------------------------------------------------------------------------
    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        """Delete the object behind an XCom that Airflow is deleting (task cleared, or retried).

        A failure is logged, not raised: it must not fail the task being re-run, and what is left
        behind is an orphan the `xcom_storage_cleanup` DAG removes.
        """
        reference = Reference.parse(getattr(xcom, "value", None))
        if reference is None:
            return
        for store in cls._copies(reference):
            cls._delete_quietly(store, reference.key)

    @staticmethod
    def _delete_quietly(store: ObjectStore, key: str) -> None:
        try:
            store.delete(key)
        except XComStorageError as exc:
            log.warning("Could not delete XCom object %s: %s", store.url(key), exc)

    @classmethod
    def _first_store(cls) -> str:
        return cls.stores[0] if cls.stores else "unknown"

    @classmethod
    def _write_stores(cls) -> list[ObjectStore]:
        if not cls.stores:
            raise TypeError(f"{cls.__name__} names no store; set `stores` on the class")
        return [open_store(scheme) for scheme in cls.stores]
