"""How azure-storage-blob's download reserves 8 bytes per byte of a range: `list()` of a stream whose
`__len__` is its length in bytes (docs/repro/azure_download_list_len.md).

Run: .venv/bin/python docs/repro/azure_download_list_len.py
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

RANGE = 8 * 1024 * 1024
BLOCK = 256 * 1024  # azure-storage-blob's connection_data_block_size


class SizedStream:
    """What azure-core's StreamDownloadGenerator looks like to `list()`: blocks, and a byte length."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, self.length, BLOCK):
            yield bytes(min(BLOCK, self.length - start))


class Unsized:
    def __init__(self, stream: SizedStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)


def peak_of_join(stream: object) -> int:
    tracemalloc.start()
    try:
        content = b"".join(list(stream))  # what azure.storage.blob._download.process_content does
        assert len(content) == RANGE
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


if __name__ == "__main__":
    sized = peak_of_join(SizedStream(RANGE))
    unsized = peak_of_join(Unsized(SizedStream(RANGE)))
    mib = RANGE / 2**20
    print(f"range {mib:.0f} MiB: peak {sized / RANGE:.1f}x with __len__, {unsized / RANGE:.1f}x without")
