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
from include.xcom_backend.download import ChunkedDownload
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
    frame = _large_frame(300_000)  # five batches (row groups) of 65,536 rows
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


def test_feather_dictionary_encodes_repeated_text_only_and_pandas_reads_the_file():
    repeated = pd.Series(["paid", "new"] * 500, dtype="str")
    unique = pd.Series([f"id-{i}" for i in range(1000)], dtype="str")
    frame = pd.DataFrame({"repeated": repeated, "unique": unique, "n": range(1000)})
    data = FeatherCodec().encode(frame).data

    schema = pa.ipc.open_file(pa.BufferReader(data)).schema
    assert pa.types.is_dictionary(schema.field("repeated").type)
    assert not pa.types.is_dictionary(schema.field("unique").type)
    pd.testing.assert_frame_equal(FeatherCodec().decode(data), frame, check_exact=True)
    # A Feather file as pandas reads one (the dictionary-encoded text comes back as a category).
    by_hand = pd.read_feather(io.BytesIO(data))
    assert by_hand["unique"].tolist() == unique.tolist()
    assert by_hand["repeated"].astype(str).tolist() == repeated.tolist()
