"""Every exact frame format (the pandas format setting's values) against the catalogue's frames, with
no store: whole bytes and streamed through a chunked download, as the backend reads a large object.

The store suites run the catalogue through the default format only; this keeps the others exact too.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from include.xcom_backend.codec_base import UnsupportedValue
from include.xcom_backend.codecs import FRAME_CODECS, formats_of
from include.xcom_backend.download import CHUNK_BYTES, FIRST_CHUNK_BYTES, ChunkedDownload
from include.xcom_backend.frames import FeatherCodec
from tests.support.hostile_values import FRAMES, assert_same

# CSV re-infers dtypes by design (README, Formats): it has no exactness to check here.
EXACT = [name for name in FRAME_CODECS if name != "csv"]


def _large_frame(rows: int) -> pd.DataFrame:
    """Numbers, repeated text and mostly distinct text: every column kind the formats treat apart.
    (Not the benchmark's frame: tools.bench needs pytest-benchmark, which the Astro image lacks.)"""
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "id": rng.integers(0, 2**62, rows, dtype=np.int64),
            "amount": rng.standard_normal(rows),
            "status": pd.array(rng.choice(["new", "paid", "shipped"], rows), dtype="str"),
            "name": pd.array([f"customer-{i}" for i in rng.integers(0, rows, rows)], dtype="str"),
            "flag": rng.random(rows) < 0.3,
        }
    )


def _downloaded(data: bytes, chunk_bytes: int) -> ChunkedDownload:
    download = ChunkedDownload(chunk_bytes=chunk_bytes)
    download.expect(len(data))
    for start in range(0, len(data), 1000):  # a store's writes, smaller than a chunk
        download.write(data[start : start + 1000])
    download.finish()
    return download


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize(("case_id", "factory", "expected"), FRAMES, ids=[c[0] for c in FRAMES])
def test_every_frame_comes_back_exactly_or_is_refused(name, case_id, factory, expected):
    codec = FRAME_CODECS[name]
    if expected != "exact":
        with pytest.raises((UnsupportedValue, expected)):
            codec.encode(factory())
        return
    data = codec.encode(factory()).data
    assert formats_of(f"x{codec.extension}") == (codec, None)
    assert_same(factory(), codec.decode(data))
    assert_same(factory(), codec.decode_download(_downloaded(data, chunk_bytes=4096)))


@pytest.mark.parametrize("name", EXACT)
def test_a_large_frame_is_read_batch_by_batch_letting_go_of_what_it_passed(name, monkeypatch):
    codec = FRAME_CODECS[name]
    frame = _large_frame(300_000)  # sixteen batches (row groups) of 18,750 rows
    data = codec.encode(frame).data
    download = _downloaded(data, chunk_bytes=256 * 1024)
    released: list[int] = []
    release = download.release_before
    monkeypatch.setattr(download, "release_before", lambda offset: (released.append(offset), release(offset)))

    pd.testing.assert_frame_equal(codec.decode_download(download), frame, check_exact=True)
    # Released as the reader went, not only at the end: the file is never whole beside the frame.
    partial = [offset for offset in released if offset < len(data)]
    assert len(partial) >= 4, released
    assert partial == sorted(partial) and partial[0] < len(data) // 2, released


@pytest.mark.parametrize("name", EXACT)
def test_a_small_frame_is_let_go_of_as_it_is_read_too(name):
    """A frame far smaller than a chunk: it is written in several batches, and the download's chunks
    follow the object's size, so the first bytes are gone before the last batch is decoded."""
    codec = FRAME_CODECS[name]
    frame = _large_frame(20_000)
    data = codec.encode(frame).data
    assert len(data) < CHUNK_BYTES // 4
    download = _downloaded(data, chunk_bytes=CHUNK_BYTES)
    first_gone_at: list[int] = []
    release = download.release_before

    def recorded(offset: int) -> None:
        release(offset)
        if not first_gone_at and offset < len(data):
            try:
                download.read_range(0, 1)
            except ValueError:
                first_gone_at.append(offset)

    download.release_before = recorded  # type: ignore[method-assign]
    pd.testing.assert_frame_equal(codec.decode_download(download), frame, check_exact=True)
    assert first_gone_at and first_gone_at[0] < len(data) * 3 // 4, first_gone_at


def test_a_download_of_unannounced_size_grows_its_chunks_and_lets_go_of_every_one_at_the_end():
    """A store that sends no length before the body (GCS): a small object does not sit in a chunk many
    times its size; a large one still ends in chunks of the full size."""
    data = np.random.default_rng(3).bytes(300_000)
    allocated = pa.total_allocated_bytes()
    download = ChunkedDownload()
    for start in range(0, len(data), 8192):
        download.write(data[start : start + 8192])
    download.finish()
    # Each chunk an eighth of what came before it: the end of the last one leaves unused at most an
    # eighth of the object, or one first chunk (one chunk of the full size would be 4 MiB).
    assert pa.total_allocated_bytes() - allocated < len(data) + max(FIRST_CHUNK_BYTES, len(data) // 8)
    assert download.file().read() == data
    download.release_before(download.size)  # the last chunk reaches past the end, and goes too
    with pytest.raises(ValueError, match="released"):
        download.read_range(download.size - 1, download.size)
    assert pa.total_allocated_bytes() - allocated <= 0

    large = ChunkedDownload(chunk_bytes=256 * 1024)
    allocated = pa.total_allocated_bytes()
    for _ in range(20):
        large.write(b"x" * 100_000)
    assert pa.total_allocated_bytes() - allocated < 2_000_000 + 256 * 1024
    large.release_before(1_000_000)
    with pytest.raises(ValueError, match="released"):
        large.read_range(0, 1)
    assert large.read_range(1_000_000, 1_000_001).to_pybytes() == b"x"


def test_feather_stores_a_small_text_column_as_text_without_trying_a_dictionary(monkeypatch):
    tried = []
    monkeypatch.setattr(FeatherCodec, "_dictionary_of", lambda self, column: tried.append(column))
    frame = pd.DataFrame({"repeated": pd.Series(["paid", "new"] * 500, dtype="str")})
    data = FeatherCodec().encode(frame).data

    assert tried == []
    assert not pa.types.is_dictionary(pa.ipc.open_file(pa.BufferReader(data)).schema.field("repeated").type)
    pd.testing.assert_frame_equal(FeatherCodec().decode(data), frame, check_exact=True)


def test_feather_dictionary_encodes_repeated_text_only_and_pandas_reads_the_file():
    rows = 60_000  # each text column over a MiB: smaller ones are never dictionary-encoded
    repeated = pd.Series(["awaiting-payment", "shipped-by-courier"] * (rows // 2), dtype="str")
    unique = pd.Series([f"order-{i:012d}" for i in range(rows)], dtype="str")
    frame = pd.DataFrame({"repeated": repeated, "unique": unique, "n": range(rows)})
    assert min(pa.array(frame[c]).nbytes for c in ("repeated", "unique")) > FeatherCodec._DICTIONARY_MIN_BYTES
    data = FeatherCodec().encode(frame).data

    schema = pa.ipc.open_file(pa.BufferReader(data)).schema
    assert pa.types.is_dictionary(schema.field("repeated").type)
    assert not pa.types.is_dictionary(schema.field("unique").type)
    pd.testing.assert_frame_equal(FeatherCodec().decode(data), frame, check_exact=True)
    # A Feather file as pandas reads one (the dictionary-encoded text comes back as a category).
    by_hand = pd.read_feather(io.BytesIO(data))
    assert by_hand["unique"].tolist() == unique.tolist()
    assert by_hand["repeated"].astype(str).tolist() == repeated.tolist()
