"""Where bytes live: the small interface every cloud adapter implements, and its error mapping.

An adapter only moves bytes (put, get, delete, list) through its provider hook or SDK and says
which of four kinds a failure is; this base turns that into the project's errors, so the messages
are the same on every cloud and never carry a secret.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, NoReturn

from include.xcom_backend.errors import (
    XComAccessDenied,
    XComBucketNotFound,
    XComObjectNotFound,
    XComStorageError,
    XComStoreUnreachable,
    redact,
)

Failure = Literal["not_found", "no_bucket", "denied", "unreachable"]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime


class ObjectStore(ABC):
    """One bucket (or container) on one store, reached through one connection."""

    scheme: ClassVar[str]

    def __init__(self, bucket: str, connection: str) -> None:
        self.bucket = bucket
        # How errors name the credentials in use: a connection id or the env vars, never a secret.
        self.connection = connection

    # --- what each cloud implements -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def configured(cls, bucket: str | None = None) -> ObjectStore:
        """The shared instance for ``bucket`` (the configured bucket when None), from the settings
        its row of registry.TABLE declares."""

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Delete one object; a missing object is not an error."""

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[StoredObject]: ...

    @abstractmethod
    def _bucket_exists(self) -> bool: ...

    @abstractmethod
    def _classify(self, exc: BaseException) -> Failure | None:
        """Which kind of failure an SDK exception is, or None for anything else."""

    # --- what the backend calls --------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> None:
        try:
            self._put(key, data, content_type, metadata)
        except Exception as exc:
            self._fail(exc, key, writing=True)

    def get(self, key: str) -> bytes:
        try:
            return self._get(key)
        except Exception as exc:
            self._fail(exc, key)

    def delete(self, key: str) -> None:
        try:
            self._delete(key)
        except Exception as exc:
            self._fail(exc, key)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        try:
            yield from self._list(prefix)
        except XComStorageError:
            raise
        except Exception as exc:
            self._fail(exc, prefix)

    def url(self, key: str) -> str:
        return f"xcom_{self.scheme}://{self.bucket}/{key}"

    def _fail(self, exc: Exception, key: str, writing: bool = False) -> NoReturn:
        if isinstance(exc, XComStorageError):
            raise exc
        kind = self._classify(exc)
        detail = f"{type(exc).__name__}: {exc}"
        # `from None` everywhere: SDK exceptions can carry signed URLs, and Airflow logs the chain.
        if kind == "not_found" and (writing or not self._bucket_exists_quietly()):
            kind = "no_bucket"
        if kind == "not_found":
            raise XComObjectNotFound(self.url(key), self.bucket) from None
        if kind == "no_bucket":
            raise XComBucketNotFound(self.bucket, self.connection) from None
        if kind == "denied":
            raise XComAccessDenied(self.bucket, self.connection, detail) from None
        if kind == "unreachable":
            raise XComStoreUnreachable(self.endpoint, detail) from None
        raise XComStorageError(
            f"{self.scheme} store failed on {self.url(key)} (connection {self.connection}): {redact(detail)}"
        ) from None

    def _bucket_exists_quietly(self) -> bool:
        try:
            return self._bucket_exists()
        except Exception:
            return True  # cannot tell; report the object as missing, which is what was asked

    # --- one client per process and configuration, built on first use ------------------------------
    _instances: ClassVar[dict[tuple[Any, ...], ObjectStore]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls, *args: Any) -> ObjectStore:
        """A cached instance, so hooks and their HTTP pools are reused across pushes and pulls.

        Keyed by process id too: a client created before a fork must not be used after it.
        """
        cache_key = (cls, os.getpid(), *args)
        store = cls._instances.get(cache_key)
        if store is None:
            with cls._instances_lock:
                store = cls._instances.get(cache_key)
                if store is None:
                    store = cls._instances[cache_key] = cls(*args)
        return store


class LazyClient:
    """Build an SDK client once, on first use, under a lock (hook construction is not thread-safe)."""

    def __init__(self) -> None:
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self, factory: Any) -> Any:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = factory()
        return self._value
