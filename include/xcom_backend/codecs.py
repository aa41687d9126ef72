"""How values become bytes and come back: JSON for general values; for the pandas backends, Feather
(or Parquet, or CSV) for pandas objects and a format of their own for numpy, pyarrow, polars and
bytes values.

A codec owns its format: extension, content type, whether its values may stay in Airflow's database
and whether compression applies. The codec is chosen from the value's exact type when writing
(`TYPES`, `type_row`) and from the object's extension when reading (`formats_of`), so a
backend can read what any other backend of this project wrote. Compressions are a registry of their
own (`COMPRESSIONS`), by setting name. No codec pickles: nothing read back can run code.
"""

from __future__ import annotations

import decimal
import gzip
import importlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from include.xcom_backend.codec_base import Codec, Encoded, UnsupportedValue
from include.xcom_backend.frames import CSVCodec, FeatherCodec, ParquetCodec

_RESERVED_KEYS = frozenset({"__classname__", "__version__", "__data__", "__id__"})


def is_pandas_object(value: Any) -> bool:
    """True for DataFrame and Series, without importing pandas for backends that never see one."""
    module = type(value).__module__
    if not module.startswith("pandas"):
        return False
    import pandas as pd

    return isinstance(value, pd.DataFrame | pd.Series)


_LEAVES = frozenset({str, int, float, bool, type(None)})


@dataclass
class _Scan:
    frames: list[Any]  # the DataFrames found, to be verified
    # Made only of dicts (with str keys), lists and the leaves, exactly those types: Airflow's
    # serializer would return an equal copy of it, so it is its own serialized form.
    plain: bool


def _check_json_value(value: Any) -> _Scan:
    """Refuse what Airflow's serializer would silently change: non-string keys, its reserved keys,
    and Decimals it would round through a float."""
    frames = []
    plain = True
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        # Exact-type tests first: plain leaves and containers are nearly every value, and cheap.
        if kind in _LEAVES:
            continue
        if kind is list:
            stack.extend(item)
        elif kind is tuple:
            plain = False
            stack.extend(item)
        elif isinstance(item, dict):
            plain = plain and kind is dict
            for k, v in item.items():
                if type(k) is not str:
                    if not isinstance(k, str):
                        raise UnsupportedValue(
                            f"dict key {k!r} of type {type(k).__name__} would come back as a string; "
                            "use string keys"
                        )
                    plain = False
                if k in _RESERVED_KEYS:
                    raise UnsupportedValue(f"dict key {k!r} is reserved by Airflow's serializer")
                if type(v) not in _LEAVES:
                    stack.append(v)
            if "__var" in item and "__type" in item:
                raise UnsupportedValue("a dict with both '__var' and '__type' keys is Airflow's envelope")
        else:
            plain = False
            if isinstance(item, decimal.Decimal):
                exponent = item.as_tuple().exponent
                if isinstance(exponent, int) and exponent < 0 and decimal.Decimal(str(float(item))) != item:
                    raise UnsupportedValue(
                        f"Decimal {item} would lose digits through Airflow's float encoding"
                    )
            elif isinstance(item, list | tuple | set | frozenset):
                stack.extend(item)
            elif is_pandas_object(item):
                frames.append(item)
            elif (row := type_row(item)) is not None:
                raise UnsupportedValue(row.refusal or f"{row.package}.{row.name} {_WHOLE_VALUE_ONLY}")
    return _Scan(frames, plain)


_WHOLE_VALUE_ONLY = "has no JSON form; a *Pandas backend stores one as an XCom's whole value only"


def _verify_frames(frames: list[Any], structure: Any) -> None:
    """Airflow's own DataFrame encoding drops a few things (object columns, index frequency); a
    JSON backend only accepts frames that it brings back exactly. Decodes the serialized structure
    once and compares the frames it holds, in the order `_check_json_value` found them."""
    import pandas as pd
    from airflow.sdk.serde import deserialize

    for frame in frames:
        if isinstance(frame, pd.Series):
            raise UnsupportedValue("Airflow's JSON encoding has no Series; use a *Pandas backend")
    decoded = _check_json_value(deserialize(structure)).frames
    for frame, back in zip(frames, decoded, strict=True):
        try:
            pd.testing.assert_frame_equal(frame, back, check_exact=True, check_freq=True)
            if back.attrs != frame.attrs:
                raise AssertionError("attrs differ")
        except AssertionError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise UnsupportedValue(
                f"Airflow's JSON encoding of this DataFrame would change it ({reason}); use a *Pandas backend"
            ) from None


class JSONCodec:
    """JSON text of Airflow's own serialization (airflow.sdk.serde).

    So every value Airflow's database XCom accepts (tuples, sets, datetimes, Decimals, dataclasses,
    DataFrames) comes back with the same type, and the object stays readable JSON in the bucket.
    What Airflow would silently change is refused instead.
    """

    extension = ".json"
    content_type = "application/json"
    in_database = True
    compressible = True

    def to_structure(self, value: Any) -> Any:
        """Airflow's serialized form of `value` (what its database XCom stores), checked for losses."""
        from airflow.sdk.serde import serialize

        try:
            scan = _check_json_value(value)
            if scan.plain:
                return value
            structure = serialize(value)
            if scan.frames:
                _verify_frames(scan.frames, structure)
            return structure
        except RecursionError:
            raise UnsupportedValue("the value is nested too deeply for JSON") from None
        except UnsupportedValue:
            raise
        except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
            raise UnsupportedValue(str(exc)) from None

    # Built once: json.dumps with options builds a new encoder per call, which costs more than
    # encoding a small value.
    _encoder = json.JSONEncoder(separators=(",", ":"))

    @classmethod
    def dumps(cls, structure: Any) -> bytes:
        try:
            return cls._encoder.encode(structure).encode("ascii")
        except RecursionError:
            raise UnsupportedValue("the value is nested too deeply for JSON") from None

    def encode(self, value: Any) -> Encoded:
        # Serialized once: the structure is both what a database row holds and the JSON's source.
        structure = self.to_structure(value)
        return Encoded(self.dumps(structure), structure)

    def decode(self, data: bytes | str) -> Any:
        structure = json.loads(data)
        if not _may_hold_envelope(data):
            return structure  # deserialize would return an equal copy: no key names a class
        from airflow.sdk.serde import deserialize

        return deserialize(structure)


def _may_hold_envelope(text: bytes | str) -> bool:
    """Whether JSON text may hold a key of Airflow's envelopes (``__classname__``, ``__type``...):
    every such key starts with two underscores, which the text holds as they are or escaped."""
    if isinstance(text, str):
        return '"__' in text or "\\u005" in text
    return b'"__' in text or b"\\u005" in text


class NumpyCodec:
    """numpy's own format: dtype (byte order, datetime unit, fields), shape (0-d, empty) and memory
    order come back as they were. Arrays of Python objects are refused: `.npy` only pickles them."""

    extension = ".npy"
    content_type = "application/x-npy"
    in_database = False
    compressible = True

    def encode(self, value: Any) -> Encoded:
        import numpy as np

        if value.dtype.hasobject:
            raise UnsupportedValue(
                f"dtype {value.dtype} holds Python objects, which .npy stores only as pickles; "
                "convert the array to a numeric, bool, datetime or string dtype"
            )
        sink = io.BytesIO()
        np.save(sink, value, allow_pickle=False)
        return Encoded(sink.getvalue())

    def decode(self, data: bytes) -> Any:
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)


class _ClassCodec:
    """A codec for several classes of one library: each class has an extension of its own, so a value
    comes back as the class it was pushed as."""

    in_database = False
    compressible = True
    extensions: dict[str, str]

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.extension = self.extensions[kind]


class ArrowCodec(_ClassCodec):
    """The Arrow IPC stream format, pyarrow's own serialization: schema, field and schema metadata
    and every batch kept (a file could not hold batches of one dictionary column with different
    dictionaries). A RecordBatch, one batch, has an extension of its own, to come back as one."""

    content_type = "application/vnd.apache.arrow.stream"
    extensions = {"Table": ".arrows", "RecordBatch": ".batch.arrows"}

    def encode(self, value: Any) -> Encoded:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        try:
            with pa.ipc.new_stream(sink, value.schema) as writer:
                writer.write(value)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise UnsupportedValue(f"Arrow IPC cannot store it: {exc}") from None
        return Encoded(sink.getvalue().to_pybytes())

    def decode(self, data: bytes) -> Any:
        import pyarrow as pa

        table = pa.ipc.open_stream(data).read_all()
        if self.kind == "Table":
            return table
        batches = table.to_batches()
        if len(batches) != 1:
            raise ValueError(f"the Arrow stream of a RecordBatch holds {len(batches)} batches, not 1")
        return batches[0]


class PolarsCodec(_ClassCodec):
    """Arrow IPC as polars writes it: its own dtypes (Categorical, Enum, Decimal, Array, Struct,
    time zones) are recorded in the file, so they come back as they were. A Series is stored as a
    one-column frame, its name the column's."""

    content_type = "application/vnd.apache.arrow.file"
    extensions = {"DataFrame": ".polars.arrow", "Series": ".polars-series.arrow"}

    def encode(self, value: Any) -> Encoded:
        import polars as pl

        frame = value.to_frame() if self.kind == "Series" else value
        sink = io.BytesIO()
        try:
            frame.write_ipc(sink, compression="uncompressed")
        except pl.exceptions.PolarsError as exc:
            raise UnsupportedValue(f"polars cannot write it as Arrow IPC: {exc}") from None
        return Encoded(sink.getvalue())

    def decode(self, data: bytes) -> Any:
        import polars as pl

        frame = pl.read_ipc(io.BytesIO(data))
        return frame.to_series() if self.kind == "Series" else frame


class BytesCodec:
    """The bytes as they are, whatever the compression setting; a bytearray's extension is its own."""

    in_database = False
    compressible = False
    content_type = "application/octet-stream"

    def __init__(self, kind: type) -> None:
        self.kind = kind
        self.extension = f".{kind.__name__}"

    def encode(self, value: Any) -> Encoded:
        return Encoded(bytes(value))

    def decode(self, data: bytes) -> Any:
        return self.kind(data)


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    # Objects written by the one-shot compressor carry their size; streaming covers the rest.
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@dataclass(frozen=True)
class Compression:
    name: str  # the value of the compression setting
    suffix: str  # added after the codec's extension
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


COMPRESSIONS = {
    c.name: c
    for c in (
        Compression(
            "gzip", ".gz", lambda data: gzip.compress(data, compresslevel=6, mtime=0), gzip.decompress
        ),
        Compression("zstd", ".zst", _zstd_compress, _zstd_decompress),
    )
}


@dataclass(frozen=True)
class TypeRow:
    """Values of exactly the type `package.name` (a subclass may carry what the format drops, such
    as a masked array's mask) go to `codec` in a pandas backend, or are refused with `refusal`."""

    package: str  # imported only for a value whose type comes from it
    name: str
    codec: Codec | None = None
    refusal: str = ""

    def matches(self, kind: type) -> bool:
        return kind is getattr(importlib.import_module(self.package), self.name)


_LAZY = "a polars LazyFrame is a query, not data: call .collect() on it and return the DataFrame"
TYPES: tuple[TypeRow, ...] = (
    TypeRow("numpy", "ndarray", NumpyCodec()),
    TypeRow("pyarrow", "Table", ArrowCodec("Table")),
    TypeRow("pyarrow", "RecordBatch", ArrowCodec("RecordBatch")),
    TypeRow("polars", "DataFrame", PolarsCodec("DataFrame")),
    TypeRow("polars", "Series", PolarsCodec("Series")),
    TypeRow("polars", "LazyFrame", refusal=_LAZY),
    TypeRow("builtins", "bytes", BytesCodec(bytes)),
    TypeRow("builtins", "bytearray", BytesCodec(bytearray)),
)
_TYPES_BY_PACKAGE = {
    package: tuple(r for r in TYPES if r.package == package) for package in {r.package for r in TYPES}
}


def type_row(value: Any) -> TypeRow | None:
    """The row of the value's type, if any; a package is imported only for values it made. A row
    without a codec, or any row inside a JSON value, is refused by the JSON codec, naming why."""
    kind = type(value)
    return next(
        (r for r in _TYPES_BY_PACKAGE.get(kind.__module__.partition(".")[0], ()) if r.matches(kind)), None
    )


CODECS: dict[str, Codec] = {
    codec.extension: codec
    for codec in (
        JSONCodec(),
        FeatherCodec(),
        ParquetCodec(),
        CSVCodec(),
        *(row.codec for row in TYPES if row.codec is not None),
    )
}
JSON_CODEC = CODECS[".json"]
# The pandas format setting -> the codec of DataFrames and Series.
FRAME_CODECS: dict[str, Codec] = {
    "feather": CODECS[".feather"],
    "parquet": CODECS[".parquet"],
    "csv": CODECS[".csv"],
}


class UnknownFormat(ValueError):
    """An object name ends in no extension of a known codec (and compression)."""


def formats_of(object_name: str) -> tuple[Codec, Compression | None]:
    """The codec and compression an object was written with, from the end of its name (the longest
    extension that fits: `.batch.arrows` is not `.arrows`)."""
    for codec in sorted(CODECS.values(), key=lambda c: -len(c.extension)):
        if object_name.endswith(codec.extension):
            return codec, None
        for compression in COMPRESSIONS.values():
            if codec.compressible and object_name.endswith(codec.extension + compression.suffix):
                return codec, compression
    known = sorted(
        [c.extension for c in CODECS.values()]
        + [c.extension + z.suffix for c in CODECS.values() if c.compressible for z in COMPRESSIONS.values()]
    )
    raise UnknownFormat(f"{object_name!r} has no known extension (known: {', '.join(known)})")
