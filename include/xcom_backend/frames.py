"""The pandas backends' formats for DataFrames and Series: Feather and Parquet (exact), CSV (the
tutorial's)."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, BinaryIO

from include.xcom_backend.codec_base import Encoded, UnsupportedValue

if TYPE_CHECKING:
    from include.xcom_backend.download import ChunkedDownload


class _FrameTable:
    """A DataFrame or Series as an Arrow table and back, with what pyarrow's pandas metadata leaves
    out recorded in the table's schema metadata.

    pyarrow restores dtypes (nullable, string, category, tz-aware, timedelta), column names and every
    index kind; this adds the RangeIndex of columns, object columns holding Python objects, the index
    frequency, `attrs`, and Series (stored as one column, returned as a Series).
    """

    _META = b"xcom_backend"
    _format = "Arrow"  # named in a refusal

    def write(self, value: Any, sink: BinaryIO) -> None:
        raise NotImplementedError  # each format writes its own file

    def encode(self, value: Any) -> Encoded:
        """The whole file as bytes (a streamed push calls `write` with the upload's sink instead)."""
        sink = io.BytesIO()
        self.write(value, sink)
        return Encoded(sink.getvalue())

    def _table_of(self, value: Any) -> tuple[Any, dict[str, Any]]:
        """The value as a table, and the metadata to record beside pyarrow's (`_with_meta`)."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        from airflow.sdk.serde import serialize

        meta: dict[str, Any] = {"v": 1, "kind": "frame"}
        if isinstance(value, pd.Series):
            meta["kind"] = "series"
            meta["series_name"] = serialize(value.name)
            frame = value.to_frame(name="series")
        else:
            frame = value
        if isinstance(frame.columns, pd.RangeIndex):
            meta["range_columns"] = [frame.columns.start, frame.columns.stop, frame.columns.step]
        meta["object_columns"] = [
            i for i, dtype in enumerate(frame.dtypes) if isinstance(dtype, np.dtype) and dtype.kind == "O"
        ]
        freq = getattr(frame.index, "freq", None)
        if freq is not None:
            meta["index_freq"] = frame.index.freqstr
        if frame.attrs:
            meta["attrs"] = serialize(frame.attrs)
        try:
            return pa.Table.from_pandas(frame), meta
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise UnsupportedValue(f"{self._format} cannot store it: {exc}") from None

    def _with_meta(self, table: Any, meta: dict[str, Any]) -> Any:
        return table.replace_schema_metadata({**(table.schema.metadata or {}), self._META: json.dumps(meta)})

    @classmethod
    def _meta_of(cls, table: Any) -> dict[str, Any]:
        return dict(json.loads((table.schema.metadata or {}).get(cls._META, b"{}")))

    def _value_of(self, table: Any) -> Any:
        """The DataFrame or Series a decoded table holds, with what this codec recorded restored."""
        import pandas as pd
        from airflow.sdk.serde import deserialize

        meta = self._meta_of(table)
        # pyarrow turns object columns into `str` or numpy arrays; rebuild the Python objects.
        objects = {i: table.column(i).to_pylist() for i in meta.get("object_columns", [])}
        # self_destruct frees each column once converted, so the table and the frame never both
        # exist whole. (A crash once blamed on it was tracemalloc racing Arrow's threads,
        # python/cpython#128679, docs/repro/.)
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        del table
        for position, values in objects.items():
            frame.isetitem(position, pd.Series(values, index=frame.index, dtype=object))
        if "range_columns" in meta:
            frame.columns = pd.RangeIndex(*meta["range_columns"], name=frame.columns.name)
        if "index_freq" in meta:
            frame.index.freq = meta["index_freq"]
        if "attrs" in meta:
            frame.attrs = deserialize(meta["attrs"])
        if meta.get("kind") == "series":
            series = frame.iloc[:, 0]
            series.name = deserialize(meta["series_name"])
            return series
        return frame


def _batch_rows(rows: int, largest: int) -> int:
    """Rows per batch (row group): at least sixteen batches, of at least 512 rows and at most
    ``largest``. A reader holds about two batches' bytes beside what it has decoded, so finer batches
    keep a small frame's pull close to the frame's size too."""
    return min(largest, max(512, -(-rows // 16)))


def _text_columns(table: Any) -> list[int]:
    import pyarrow as pa

    return [
        i
        for i, f in enumerate(table.schema)
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]


class ParquetCodec(_FrameTable):
    """Parquet through pyarrow: the format other tools read, and the store's smallest file."""

    extension = ".parquet"
    content_type = "application/vnd.apache.parquet"
    in_database = False  # a frame's exact dtypes live in the Parquet file only
    compressible = False  # compressed inside, per column
    _format = "Parquet"

    # lz4 and no column statistics: encode + decode of 1M mixed rows takes a third of the time of
    # pyarrow's defaults for a 3% larger file (docs/benchmarks.md); nothing reads these statistics.
    def __init__(self, compression: str = "lz4") -> None:
        self.compression = compression

    def write(self, value: Any, sink: BinaryIO) -> None:
        """Encode ``value`` into ``sink`` as the Parquet file is written (upload.py streams it)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table, meta = self._table_of(value)
        table = self._with_meta(table, meta)
        # Dictionary encoding pays off for text, not for numbers and timestamps.
        text = [table.schema.field(i).name for i in _text_columns(table)]
        text += [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
        # Written straight into the sink (a BytesIO, or the upload's parts): no second copy of the
        # file as with an Arrow buffer.
        pq.write_table(
            table,
            sink,
            compression=self.compression,
            use_dictionary=text or False,
            write_statistics=False,
            # Row groups a reader decodes one at a time (decode_download).
            row_group_size=_batch_rows(table.num_rows, 65_536),
        )

    def decode(self, data: bytes) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return self._value_of(pq.read_table(pa.BufferReader(data)))

    def decode_download(self, download: ChunkedDownload) -> Any:
        """Decode row group by row group from the download's chunks, letting go of the chunks each
        row group has passed, so the file and the decoded frame are never both whole in memory."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(download.file())
        metadata = parquet.metadata
        groups = []
        for index in range(metadata.num_row_groups):
            groups.append(parquet.read_row_group(index))
            if index + 1 < metadata.num_row_groups:
                download.release_before(_row_group_start(metadata.row_group(index + 1)))
        schema = parquet.schema_arrow
        del parquet
        download.release_before(download.size)
        table = pa.concat_tables(groups) if groups else schema.empty_table()
        del groups
        return self._value_of(table)


class FeatherCodec(_FrameTable):
    """Feather (the Arrow IPC file format) with lz4-compressed buffers: the default.

    Arrow's own layout, so encoding is mostly copying and decoding nearly free: encode + decode of
    the benchmark's 1M mixed rows take about half of Parquet's time, for a file of about the same
    size (docs/benchmarks.md). `pd.read_feather` and polars read the objects too.
    """

    extension = ".feather"
    content_type = "application/vnd.apache.arrow.file"
    in_database = False
    compressible = False  # compressed inside, per buffer
    _format = "Feather"
    _BATCH_ROWS = 65_536  # record batches a reader decodes one at a time (decode_download)
    # Text columns are written dictionary-encoded when at most this share of their values is
    # distinct: the usual low-cardinality text shrinks by the repeats, unique ids are left as they are.
    _DICTIONARY_SHARE = 0.5
    # Finding that share builds the whole dictionary, whose hash table can take twice the column's
    # size for a moment. Under a MiB of text, the most a dictionary could save is under a MiB of
    # transfer (and lz4 already shortens repeats), so smaller columns are stored as they are.
    _DICTIONARY_MIN_BYTES = 1 << 20
    _MAGIC = 8  # "ARROW1" and its padding: what precedes the IPC stream inside a file

    def write(self, value: Any, sink: BinaryIO) -> None:
        """Encode ``value`` into ``sink`` batch by batch (upload.py streams it)."""
        import pyarrow as pa

        table, meta = self._table_of(value)
        encoded = []
        for i in _text_columns(table):
            if table.column(i).nbytes < self._DICTIONARY_MIN_BYTES:
                continue
            dictionary = self._dictionary_of(table.column(i))
            if dictionary is not None:
                table = table.set_column(i, table.schema.field(i).with_type(dictionary.type), dictionary)
                encoded.append(i)
        meta["dictionary_text"] = encoded  # cast back to text when read, so pandas sees no category
        table = self._with_meta(table, meta)
        options = pa.ipc.IpcWriteOptions(compression="lz4", unify_dictionaries=True)
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=_batch_rows(table.num_rows, self._BATCH_ROWS))

    def _dictionary_of(self, column: Any) -> Any:
        """The text column dictionary-encoded, or None when too many of its values are distinct (the
        trial dictionary is freed here, not held while the writer runs)."""
        dictionary = column.dictionary_encode()
        distinct = max((len(chunk.dictionary) for chunk in dictionary.chunks), default=0)
        return dictionary if distinct <= self._DICTIONARY_SHARE * len(column) else None

    def decode(self, data: bytes) -> Any:
        import pyarrow as pa

        file = pa.ipc.open_file(pa.BufferReader(data), options=_read_options())
        return self._value_of(self._text_restored(file.read_all()))

    def decode_download(self, download: ChunkedDownload) -> Any:
        """Read the file's stream batch by batch from the download's chunks, letting go of the chunks
        each batch has passed, so the file and the decoded frame are never both whole in memory.

        A Feather file is the IPC stream between a magic header and a footer, so it is read front to
        back as a stream: no seek to the footer, and every byte behind the reader is done with."""
        import pyarrow as pa

        file = download.file()
        file.seek(self._MAGIC)
        reader = pa.ipc.open_stream(file, options=_read_options())
        batches = []
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            download.release_before(file.tell())
        schema = reader.schema
        del reader
        download.release_before(download.size)
        table = pa.Table.from_batches(batches, schema=schema)
        del batches
        # Rebound, not kept: a table still holding the columns would stop to_pandas(self_destruct)
        # from freeing each one as it is converted.
        table = self._text_restored(table)
        return self._value_of(table)

    def _text_restored(self, table: Any) -> Any:
        """The table with its dictionary-encoded text columns as text again."""
        for i in self._meta_of(table).get("dictionary_text", []):
            field = table.schema.field(i)
            text = field.type.value_type
            table = table.set_column(i, field.with_type(text), table.column(i).cast(text))
        return table


def _read_options() -> Any:
    """How Feather files are read: buffers decompressed one after the other, on the reading thread.

    In parallel, each thread holds an lz4 frame decompressor of its own (about 130 kB), which showed
    as 0.2x of a 10,000-row frame in S3's pull; a million rows decode no slower on one thread."""
    import pyarrow as pa

    return pa.ipc.IpcReadOptions(use_threads=False)


def _row_group_start(row_group: Any) -> int:
    """Where a row group's first page (its dictionary, if any) begins in the file."""
    starts = []
    for index in range(row_group.num_columns):
        column = row_group.column(index)
        starts.append(column.data_page_offset)
        if column.has_dictionary_page and column.dictionary_page_offset is not None:
            starts.append(column.dictionary_page_offset)
    return min(starts, default=0)


class CSVCodec:
    """The tutorial's format, kept as an option. Lossy by nature: dtypes are re-inferred when read
    (nullable ints, categories, tz-aware datetimes and timedeltas come back as plain numbers or
    strings), only the first index level survives, and a Series comes back as a one-column frame."""

    extension = ".csv"
    content_type = "text/csv"
    in_database = False
    compressible = True

    def encode(self, value: Any) -> Encoded:
        return Encoded(value.to_csv(index=True).encode("utf-8"))

    def decode(self, data: bytes) -> Any:
        import pandas as pd

        return pd.read_csv(io.BytesIO(data), index_col=0)
