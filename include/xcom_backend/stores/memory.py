"""Bytes in this process's memory, like fsspec's ``memory://``: the store the unit tests run on.

Every process has its own, so a value one task process pushes cannot be pulled by another: it is a
store for tests and for trying the backends in one Python process, not for DAG runs. A bucket comes
into being with its first object, as a directory does in fsspec's memory filesystem.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

from include.xcom_backend.registry import row
from include.xcom_backend.settings import value
from include.xcom_backend.stores.base import Failure, ObjectStore, StoredObject


class _NoSuchKey(KeyError):
    pass


class _NoSuchBucket(KeyError):
    pass


class MemoryStore(ObjectStore):
    scheme = "memory"

    # bucket -> key -> (bytes, what a listing shows); shared by every instance of the process.
    _buckets: ClassVar[dict[str, dict[str, tuple[bytes, StoredObject]]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket, "this process's memory")

    @classmethod
    def configured(cls, bucket: str | None = None) -> MemoryStore:
        return cls.shared(bucket or value(row(cls.scheme).bucket_option))

    @property
    def endpoint(self) -> str:
        return "memory://"

    def _objects(self) -> dict[str, tuple[bytes, StoredObject]]:
        try:
            return self._buckets[self.bucket]
        except KeyError:
            raise _NoSuchBucket(self.bucket) from None

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        stored = StoredObject(key, len(data), datetime.now(UTC))
        with self._lock:
            self._buckets.setdefault(self.bucket, {})[key] = (bytes(data), stored)

    def _get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects()[key][0]
            except KeyError as exc:
                if isinstance(exc, _NoSuchBucket):
                    raise
                raise _NoSuchKey(key) from None

    def _delete(self, key: str) -> None:
        with self._lock:
            self._objects().pop(key, None)

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        with self._lock:
            listed = [item for key, (_, item) in sorted(self._objects().items()) if key.startswith(prefix)]
        yield from listed

    def _bucket_exists(self) -> bool:
        return self.bucket in self._buckets

    def _classify(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, _NoSuchBucket):
            return "no_bucket"
        if isinstance(exc, _NoSuchKey):
            return "not_found"
        return None
