"""A value's bytes uploaded while they are being encoded.

The encoder (pyarrow's Feather or Parquet writer, which releases the GIL while it encodes) writes into a
`PartSink`; the sink cuts the bytes into the store's parts and hands them to an uploader thread,
which sends them while the encoder goes on, and hashes them as they pass (one pass over the bytes).
The thread starts only once a second part begins: a value that fits in one part is one plain PUT.

`upload_parts` is the multipart protocol shared by the stores that have one (S3, MinIO, Azure
blocks): several parts in flight, each under the store's retry policy, and an abort on any failure,
so that a failed upload leaves no object.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from include.xcom_backend.stores.base import ObjectStore

log = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()  # the encoder finished: no more parts
_POLL = 0.05  # seconds between looks at whether the other side has failed


@runtime_checkable
class StreamingCodec(Protocol):
    """A codec that can write its bytes into a file as it encodes (FeatherCodec, ParquetCodec)."""

    def write(self, value: Any, sink: BinaryIO) -> None: ...


class EncoderFailed(Exception):
    """Raised inside the uploader when the encoder failed, so that the store aborts the upload."""


@dataclass(frozen=True)
class Uploaded:
    size: int
    sha256: str


class PartSink:
    """A write-only file whose bytes go to ``store.put_parts`` in parts of ``store.part_size``."""

    def __init__(self, store: ObjectStore, key: str, content_type: str, keep: bool = False) -> None:
        self.store = store
        self.key = key
        self.content_type = content_type
        self.part_size = store.part_size
        # Every part, for the mirror stores the bytes go to next (None: parts are dropped once sent).
        self.kept: list[bytes] | None = [] if keep else None
        # A BytesIO rather than a bytearray: a value of one part is handed to the PUT by getvalue(),
        # which shares the buffer, where bytes(bytearray) would copy it (for GCS's 40 MiB parts, the
        # value a second time).
        self._buffer = io.BytesIO()
        self._size = 0
        self._hash = hashlib.sha256()
        # At most this many parts wait for the uploader: the encoder slows down rather than the
        # parts piling up in memory when the store is slower than the encoder.
        self._parts: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._done = threading.Event()
        self.closed = False

    # --- the file the encoder writes ---------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        return None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._failure is not None:
            raise RuntimeError("the upload failed; the encoder stops")  # the upload's error is raised
        written = self._buffer.write(data)
        self._size += written
        size = self.part_size
        if self._buffer.tell() > size:  # `>`: a value of exactly one part stays one PUT
            with self._buffer.getbuffer() as view:
                cut = (len(view) - 1) // size * size  # whole parts, leaving at least one byte
                parts = [bytes(view[start : start + size]) for start in range(0, cut, size)]
                rest = bytes(view[cut:])
            self._buffer = io.BytesIO(rest)
            self._buffer.seek(0, io.SEEK_END)
            parts.reverse()
            while parts:  # popped, so that a part sent is no longer held here
                self._send(parts.pop())
        return written

    # --- the end -------------------------------------------------------------------------------------
    def finish(self) -> Uploaded:
        """Upload what is left and wait for the upload; raises the store's error if it failed."""
        self.closed = True
        last = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        if self._thread is None:  # one part: a plain PUT, no thread, no multipart
            self._hash.update(last)
            self._keep(last)
            self.store.put(self.key, last, content_type=self.content_type, metadata={})
        else:
            self._send(last)
            self._send(_END)
            self._thread.join()
            if self._failure is not None:
                raise self._failure
        return Uploaded(self._size, self._hash.hexdigest())

    def fail(self, error: BaseException) -> None:
        """The encoder failed: abort the upload (if one began) and wait until it has."""
        self.closed = True
        if self._thread is not None:
            self._send(EncoderFailed(str(error)))
            self._thread.join()

    def _keep(self, part: bytes) -> None:
        if self.kept is not None:
            self.kept.append(part)

    # --- the uploader thread -----------------------------------------------------------------------
    def _send(self, item: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._upload, name=f"xcom-upload {self.key}", daemon=True)
            self._thread.start()
        while not self._done.is_set():
            try:
                self._parts.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
        if self._failure is not None and item is not _END and not isinstance(item, EncoderFailed):
            raise RuntimeError("the upload failed; the encoder stops")

    def _received(self) -> Iterator[bytes]:
        while True:
            item = self._parts.get()
            if item is _END:
                return
            if isinstance(item, EncoderFailed):
                raise item
            self._hash.update(item)  # hashlib releases the GIL: this overlaps the encoder too
            self._keep(item)
            yield item

    def _upload(self) -> None:
        try:
            self.store.put_parts(self.key, self._received(), content_type=self.content_type, metadata={})
        except BaseException as exc:  # handed to the encoder's thread, which raises it
            self._failure = exc
        finally:
            self._done.set()


def stream_upload(
    store: ObjectStore, key: str, content_type: str, write: Callable[[PartSink], None], keep: bool = False
) -> tuple[Uploaded, list[bytes] | None]:
    """Run ``write(sink)`` (the encoder) while its bytes are uploaded to ``key``; the size and sha256
    of what was stored, and its parts if ``keep`` (for mirror copies)."""
    sink = PartSink(store, key, content_type, keep=keep)
    try:
        write(sink)
    except BaseException as exc:
        sink.fail(exc)
        if sink._failure is not None and not isinstance(sink._failure, EncoderFailed):
            raise sink._failure from None  # the encoder stopped because the upload failed
        raise
    return sink.finish(), sink.kept


class Multipart(Protocol[T]):
    """The calls of a store's multipart protocol; `T` is what a part's upload returns (its ETag)."""

    def _begin_parts(self, key: str, content_type: str, metadata: dict[str, str]) -> str: ...

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes) -> T: ...

    def _finish_parts(
        self, key: str, upload_id: str, done: list[T], content_type: str, metadata: dict[str, str]
    ) -> None: ...

    def _abort_parts(self, key: str, upload_id: str) -> None: ...


def upload_parts(
    store: ObjectStore,
    protocol: Multipart[T],
    key: str,
    parts: Iterator[bytes],
    content_type: str,
    metadata: dict[str, str],
) -> None:
    """Upload ``parts`` (numbered from 1) as one object, ``store.part_concurrency`` at a time, each
    part under the retry policy; on any failure (a part, or the parts' producer) abort and raise."""
    upload_id = store._retried(lambda: protocol._begin_parts(key, content_type, metadata), key, writing=True)
    results: dict[int, T] = {}
    pending: set[Future[None]] = set()

    def send(number: int, data: bytes) -> None:
        results[number] = store._retried(
            lambda: protocol._put_part(key, upload_id, number, data), key, writing=True
        )

    pool = ThreadPoolExecutor(max_workers=store.part_concurrency, thread_name_prefix="xcom-part")
    try:
        for number, data in enumerate(parts, start=1):
            while len(pending) >= store.part_concurrency:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
            pending.add(pool.submit(send, number, data))
            del data
        for future in pending:
            future.result()
        pending = set()
        done = [results[number] for number in sorted(results)]
        finish = lambda: protocol._finish_parts(key, upload_id, done, content_type, metadata)  # noqa: E731
        store._retried(finish, key, writing=True)
    except BaseException:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        try:
            protocol._abort_parts(key, upload_id)  # one attempt, bounded by the policy's timeouts
        except Exception as exc:
            # An upload never completed stays invisible; the bucket's lifecycle rule reclaims it.
            log.warning("Could not abort the upload of %s: %s", store.url(key), exc)
        raise
    finally:
        pool.shutdown(wait=True)
