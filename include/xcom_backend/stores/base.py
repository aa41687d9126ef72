"""Where bytes live: the small interface every cloud adapter implements, its error mapping and its
retry policy.

An adapter only moves bytes (put, get, delete, list) through its provider hook or SDK, with the SDK's
own retries off and the policy's timeouts on every call, and says which kind a failure is; this base
turns that into the project's errors, so the messages are the same on every cloud and never carry a
secret, and retries what may pass (an endpoint that does not answer, a store that says it is busy)
with the one policy of the settings: `attempts` tries, 0.5 s back-off doubling in between.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, NoReturn, TypeVar

import tenacity

from include.xcom_backend.download import Download, TruncatedDownload
from include.xcom_backend.errors import (
    XComAccessDenied,
    XComBucketNotFound,
    XComObjectNotFound,
    XComStorageError,
    XComStoreUnreachable,
    redact,
)
from include.xcom_backend.settings import RetryPolicy, Settings, value

log = logging.getLogger(__name__)
T = TypeVar("T")
C = TypeVar("C")  # a connected store's client or hook
S = TypeVar("S", bound="ObjectStore")
D = TypeVar("D", bound=Download)

Failure = Literal["not_found", "no_bucket", "denied", "unreachable", "busy"]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime


class ObjectStore(ABC):
    """One bucket (or container) on one store, reached through one connection."""

    scheme: ClassVar[str]
    # Seconds the SDK waits per attempt whatever the timeouts say (S3's wait for "100 Continue").
    fixed_wait: ClassVar[float] = 0.0
    # A streamed upload (upload.py) sends parts of this size, all but the last: S3 and MinIO need
    # at least 5 MiB, GCS a multiple of 256 KiB, Azure blocks take any size.
    part_size: ClassVar[int] = 8 * 1024 * 1024
    part_concurrency: ClassVar[int] = 4  # parts in flight at once, where the store takes them so

    def __init__(self, bucket: str, connection: str) -> None:
        self.bucket = bucket
        # Timeouts and attempts of every call; adapters build their SDK clients with them.
        self.policy: RetryPolicy = Settings.from_env().retry_policy
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

    def _get_into(self, key: str, sink: Download) -> None:
        """Write the object into ``sink`` as it arrives (stores whose SDK can stream override this;
        the default, for a store that only has `_get`, writes the whole object at once)."""
        sink.write(self._get(key))

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

    def _check_upload_settings(self) -> None:
        """Raise the ValueError of a bad upload setting of this store (its encryption), read before
        the first attempt so that it names the setting instead of passing for a store failure."""
        return None  # a store with no such setting (memory)

    # --- what the backend calls --------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> None:
        self._check_upload_settings()
        self._retried(lambda: self._put(key, data, content_type, metadata), key, writing=True)

    def put_parts(
        self, key: str, parts: Iterator[bytes], *, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Upload one object whose bytes arrive as ``parts`` (each ``part_size`` but the last), as
        they arrive; one part is one plain PUT."""
        self._check_upload_settings()
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:
            self._retried(lambda: self._put(key, first, content_type, metadata), key, writing=True)
            return
        self._put_parts(key, itertools.chain((first, second), parts), content_type, metadata)

    def _put_parts(
        self, key: str, parts: Iterator[bytes], content_type: str, metadata: dict[str, str]
    ) -> None:
        """The parts joined and put at once: a store without a multipart protocol (memory). Stores
        that have one override this, retrying each call with ``_retried`` and aborting on failure."""
        data = b"".join(parts)
        self._retried(lambda: self._put(key, data, content_type, metadata), key, writing=True)

    def get(self, key: str) -> bytes:
        return self._retried(lambda: self._get(key), key)

    def download(self, key: str, new_sink: Callable[[], D]) -> D:
        """The object, written into a sink of ``new_sink`` as it arrives and checked complete. An
        attempt that fails part way is retried under the policy with a fresh sink."""

        def attempt() -> D:
            sink = new_sink()
            try:
                self._get_into(key, sink)
                sink.finish()
            except TruncatedDownload as exc:
                raise XComStoreUnreachable(self.endpoint, f"the download broke off: {exc}") from None
            return sink

        return self._retried(attempt, key)

    def delete(self, key: str) -> None:
        self._retried(lambda: self._delete(key), key)

    @property
    def failure_bound(self) -> float:
        """Longest a call takes against a dead or hung store, from the first attempt (seconds)."""
        return self.policy.failure_bound(self.fixed_wait)

    def _retried(self, call: Callable[[], T], key: str, writing: bool = False) -> T:
        """``call`` under the retry policy; what still fails is raised as the project's error."""

        def attempt() -> T:
            try:
                return call()
            except Exception as exc:
                self._fail(exc, key, writing=writing)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.attempts),
            wait=tenacity.wait_chain(
                *(tenacity.wait_fixed(s) for s in self.policy.backoffs()), tenacity.wait_none()
            ),
            retry=tenacity.retry_if_exception_type(XComStoreUnreachable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(attempt)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        detail = getattr(error, "detail", "") or "no detail"  # redacted (errors.XComStoreUnreachable)
        log.warning(
            "XCom store %s did not answer or was busy (attempt %d of %d: %s); retrying in %.1f s",
            self.endpoint,
            state.attempt_number,
            self.policy.attempts,
            detail,
            wait,
        )

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
            raise XComBucketNotFound(self.bucket, self.connection, self._bucket_setting()) from None
        if kind == "denied":
            raise XComAccessDenied(self.bucket, self.connection, detail) from None
        if kind in ("unreachable", "busy"):
            raise XComStoreUnreachable(self.endpoint, detail) from None
        raise XComStorageError(
            f"{self.scheme} store failed on {self.url(key)} (connection {self.connection}): {redact(detail)}"
        ) from None

    def _bucket_setting(self) -> str:
        from include.xcom_backend.registry import TABLE

        store_row = TABLE.get(self.scheme)
        return store_row.bucket_option.env_var if store_row else ""

    def _bucket_exists_quietly(self) -> bool:
        try:
            return self._bucket_exists()
        except Exception:
            return True  # cannot tell; report the object as missing, which is what was asked

    # --- one client per process and configuration, built on first use ------------------------------
    _instances: ClassVar[dict[tuple[Any, ...], ObjectStore]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls: type[S], *args: Any) -> S:
        """A cached instance, so hooks and their HTTP pools are reused across pushes and pulls.

        Keyed by process id too: a client created before a fork must not be used after it.
        """
        policy = Settings.from_env().retry_policy
        cache_key = (cls, os.getpid(), policy, *args)
        store = cls._instances.get(cache_key)
        if store is None:
            with cls._instances_lock:
                store = cls._instances.get(cache_key)
                if store is None:
                    store = cls._instances[cache_key] = cls(*args)
        assert isinstance(store, cls)
        return store


class ConnectedStore(ObjectStore, Generic[C]):
    """A store reached through an Airflow connection and its provider hook: the bucket and the
    connection id are the `bucket` and `conn_id` options of its row; the client is built on first use."""

    def __init__(self, bucket: str, conn_id: str) -> None:
        super().__init__(bucket, f"'{conn_id}'")
        self.conn_id = conn_id
        self._client: LazyClient[C] = LazyClient()

    @classmethod
    def configured(cls: type[S], bucket: str | None = None) -> S:
        from include.xcom_backend.registry import row

        options = row(cls.scheme).options
        return cls.shared(bucket or value(options["bucket"]), value(options["conn_id"]))

    @abstractmethod
    def _connect(self) -> C:
        """The hook or SDK client, with the SDK's retries off and the policy's timeouts."""

    @property
    def connected(self) -> C:
        return self._client.get(self._connect)

    @abstractmethod
    def _endpoint_url(self) -> str:
        """The URL the client talks to, without credentials."""

    @property
    def endpoint(self) -> str:
        try:
            return self._endpoint_url()
        except Exception:  # the connection cannot be read: name it instead
            return f"the {self.scheme} endpoint of connection '{self.conn_id}'"


class LazyClient(Generic[T]):
    """Build an SDK client once, on first use, under a lock (hook construction is not thread-safe)."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self, factory: Callable[[], T]) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = factory()
        return self._value
