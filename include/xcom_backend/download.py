"""An object's bytes as a store sends them: into a buffer the backend owns, hashed as they arrive.

A store writes what it receives into a `Download` (in order with `write`, or at offsets with
`seek` + `write` when an SDK fetches ranges in parallel), never building the object as one `bytes`
of its own. The sha256 advances over the bytes received in order, so each byte is hashed once,
while it is still in the CPU's cache, and the digest is ready when the last byte lands.

Two kinds, by what the codec reads:
- `ContiguousDownload`: one buffer, a `bytes` at the end without a second copy (a BytesIO sized
  to the object and written in place; `getvalue()` hands over that very buffer), for the codecs
  that parse a whole `bytes` (JSON, numpy, bytes, compressed objects...).
- `ChunkedDownload`: fixed-size chunks in Arrow's memory pool, and a random-access file over them
  (`ChunkFile`) for pyarrow, so that a reader that goes front to back (Feather or Parquet, one batch
  at a time) can release the chunks it has passed while the decoded value grows in the same pool.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from abc import ABC, abstractmethod
from typing import Any

# Chunks of Arrow memory: big enough for few allocations, small enough that what is left of a chunk
# a reader has passed stays a few percent of a large frame.
CHUNK_BYTES = 4 * 1024 * 1024
# The smallest chunk, and the first of an object whose size the store did not say.
FIRST_CHUNK_BYTES = 32 * 1024
# A chunk is this fraction of the object (of what came before it, when the size was not announced):
# the chunks a reader has not yet passed, and the unused end of the last one, stay that small.
_CHUNKS_PER_OBJECT = 8
# How much an adapter reads from a response body at a time.
READ_BYTES = 256 * 1024


def sought(position: int, end: int, offset: int, whence: int) -> int:
    """The position a file's ``seek(offset, whence)`` moves to, from ``position`` in ``end`` bytes."""
    if whence == io.SEEK_SET:
        return offset
    if whence == io.SEEK_CUR:
        return position + offset
    return end + offset


class TruncatedDownload(ConnectionError):
    """The store sent fewer bytes than it announced, or left a gap: the download is retried."""


class Download(ABC):
    """A sink for one object: file-like enough for the SDKs (write, seek, tell), with a running sha256."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._hashed = 0  # the bytes [0, _hashed) went through the checksum
        self._position = 0
        self._end = 0  # one past the last byte written
        self._expected: int | None = None
        self._ahead: dict[int, int] = {}  # ranges written past the hashed prefix: start -> end

    # --- what the stores call ---------------------------------------------------------------------
    def expect(self, size: int) -> None:
        """The object's length, when the store says it before the body: the buffer is sized once."""
        self._expected = size
        self._reserve(size)

    def write(self, data: Any) -> int:
        """Write ``data`` (bytes or any buffer) at the current position."""
        view = memoryview(data).cast("B")
        length = len(view)
        if length:
            start = self._position
            self._store(start, view)
            self._position = start + length
            self._end = max(self._end, self._position)
            self._advance_checksum(start, self._position)
        return length

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = sought(self._position, self._end, offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        return None

    # --- what the backend calls -------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._end

    def finish(self) -> None:
        """Check that every byte came: as many as announced, no gap left by out-of-order ranges."""
        if self._expected is not None and self._end != self._expected:
            raise TruncatedDownload(f"received {self._end} of {self._expected} bytes")
        if self._hashed != self._end:
            gap_end = min(self._ahead, default=self._end)
            raise TruncatedDownload(f"bytes {self._hashed} to {gap_end} never came")

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    # --- storage --------------------------------------------------------------------------------
    @abstractmethod
    def _reserve(self, size: int) -> None: ...

    @abstractmethod
    def _store(self, offset: int, view: memoryview) -> None: ...

    @abstractmethod
    def _hash_range(self, start: int, end: int) -> None:
        """Feed the stored bytes [start, end) to the checksum, without copying them."""

    def _advance_checksum(self, start: int, end: int) -> None:
        if start != self._hashed:  # a range ahead of the prefix (parallel ranges): hashed when reached
            self._ahead[start] = max(end, self._ahead.get(start, end))
            return
        self._hash_range(start, end)
        self._hashed = end
        while self._hashed in self._ahead:
            following = self._ahead.pop(self._hashed)
            if following > self._hashed:
                self._hash_range(self._hashed, following)
                self._hashed = following


class ContiguousDownload(Download):
    """The object as one `bytes`, built in place: at most one object's size in memory, never two."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = io.BytesIO()

    def _reserve(self, size: int) -> None:
        # Writing one byte at the end makes the BytesIO allocate the whole object once; the writes
        # that follow land inside it.
        if size > self._end:
            self._buffer.seek(size - 1)
            self._buffer.write(b"\0")

    def _store(self, offset: int, view: memoryview) -> None:
        self._buffer.seek(offset)
        self._buffer.write(view)

    def _hash_range(self, start: int, end: int) -> None:
        with self._buffer.getbuffer() as whole:
            self._sha.update(whole[start:end])

    def getvalue(self) -> bytes:
        """The bytes, sharing the BytesIO's buffer (no copy): the download is spent afterwards."""
        if self._buffer.seek(0, io.SEEK_END) != self._end:  # a reservation longer than what came
            self._buffer.truncate(self._end)
        data = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        return data


class ChunkedDownload(Download):
    """The object in chunks of Arrow memory, read through `file()`; chunks can be released.

    When the store announced the size, a chunk is an eighth of it, from `FIRST_CHUNK_BYTES` to
    `chunk_bytes` (the last one trimmed to the end). When it did not (a streamed body without a
    length), chunks start at `FIRST_CHUNK_BYTES` and each is an eighth of all before it, up to
    `chunk_bytes`: a small object does not sit in a chunk many times its size, and a large one still
    takes few allocations.
    """

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__()
        self.chunk_bytes = chunk_bytes
        self._chunks: list[Any] = []  # pyarrow Buffers; None once released
        self._ends: list[int] = []  # one past where each chunk ends (each begins where the last ended)
        self._released = 0  # the chunks [0, _released) were let go

    def _reserve(self, size: int) -> None:
        return None  # chunks are allocated as bytes arrive; the size only sets their length

    def _next_length(self, start: int) -> int:
        if self._expected is not None:
            length = min(self.chunk_bytes, max(FIRST_CHUNK_BYTES, self._expected // _CHUNKS_PER_OBJECT))
            return max(1, min(length, self._expected - start))
        return min(self.chunk_bytes, max(FIRST_CHUNK_BYTES, start // _CHUNKS_PER_OBJECT))

    def _index(self, offset: int) -> int:
        """The chunk holding ``offset``, allocating chunks up to it."""
        import pyarrow as pa

        while not self._ends or offset >= self._ends[-1]:
            start = self._ends[-1] if self._ends else 0
            length = self._next_length(start)
            self._ends.append(start + length)
            self._chunks.append(pa.allocate_buffer(length))
        return bisect.bisect_right(self._ends, offset)  # the first chunk ending past it

    def _start(self, index: int) -> int:
        return self._ends[index - 1] if index else 0

    def _chunk(self, index: int) -> Any:
        chunk = self._chunks[index]
        if chunk is None:
            raise ValueError(f"chunk {index} of the download was released and cannot be read again")
        return chunk

    def _store(self, offset: int, view: memoryview) -> None:
        done = 0
        while done < len(view):
            at = offset + done
            if self._expected is not None and at >= self._expected:
                raise TruncatedDownload(f"the store sent more than the {self._expected} bytes it announced")
            index = self._index(at)
            target = memoryview(self._chunk(index)).cast("B")
            inside = at - self._start(index)
            count = min(len(view) - done, len(target) - inside)
            target[inside : inside + count] = view[done : done + count]
            done += count

    def _hash_range(self, start: int, end: int) -> None:
        for piece in self._pieces(start, end):
            self._sha.update(piece)

    def _pieces(self, start: int, end: int) -> list[Any]:
        """The stored bytes [start, end) as zero-copy slices of the chunks, in order."""
        pieces = []
        while start < end:
            index = self._index(start)
            chunk = self._chunk(index)
            inside = start - self._start(index)
            count = min(end - start, chunk.size - inside)
            pieces.append(chunk.slice(inside, count))
            start += count
        return pieces

    def read_range(self, start: int, end: int) -> Any:
        """The bytes [start, end) as one Arrow buffer: a slice of a chunk, or (across chunks) a copy."""
        import pyarrow as pa

        end = min(end, self._end)
        if end <= start:
            return pa.py_buffer(b"")
        pieces = self._pieces(start, end)
        if len(pieces) == 1:
            return pieces[0]
        joined = pa.allocate_buffer(end - start)
        target = memoryview(joined).cast("B")
        position = 0
        for piece in pieces:
            target[position : position + piece.size] = memoryview(piece).cast("B")
            position += piece.size
        return joined

    def release_before(self, offset: int) -> None:
        """Let go of every chunk wholly before ``offset``: a reader has passed them for good."""
        # Past the last byte, every chunk goes, the last one too when it reaches beyond the end (a
        # size the store did not announce).
        last = len(self._chunks) if offset >= self._end else bisect.bisect_right(self._ends, offset)
        for index in range(self._released, last):
            self._chunks[index] = None
        self._released = max(self._released, last)

    def file(self) -> ChunkFile:
        return ChunkFile(self)


class ChunkFile(io.RawIOBase):
    """A read-only, seekable file over a `ChunkedDownload`, for pyarrow (its `read_buffer` hands
    pyarrow slices of the chunks themselves, not copies)."""

    def __init__(self, download: ChunkedDownload) -> None:
        super().__init__()
        self.download = download
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = sought(self._position, self.download.size, offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position

    def read_buffer(self, size: int = -1) -> Any:
        end = self.download.size if size is None or size < 0 else self._position + size
        buffer = self.download.read_range(self._position, end)
        self._position += buffer.size
        return buffer

    def read(self, size: int = -1) -> bytes:
        return self.read_buffer(size).to_pybytes()

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        buffer = self.read_buffer(len(view))
        view[: buffer.size] = memoryview(buffer).cast("B")
        return int(buffer.size)
