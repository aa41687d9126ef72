"""Hostile values and frames for the backend contract suite, and an exact-equality check.

Each case is (id, factory, expected): expected is "exact" (must come back equal, with the same
types) or an exception class the backend must raise when storing it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from include.xcom_backend.reference import ROW_KEY

Case = tuple[str, Callable[[], Any], Any]


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


VALUES: list[Case] = [
    ("none", lambda: None, "exact"),
    ("true", lambda: True, "exact"),
    ("false", lambda: False, "exact"),
    ("zero", lambda: 0, "exact"),
    ("negative", lambda: -1, "exact"),
    ("int-beyond-64-bit", lambda: 2**70 + 1, "exact"),
    ("int-below-int64", lambda: -(2**63) - 1, "exact"),
    ("float", lambda: 1.5, "exact"),
    ("float-max", lambda: 1.7976931348623157e308, "exact"),
    ("float-subnormal", lambda: 5e-324, "exact"),
    ("float-nan", lambda: math.nan, "exact"),
    ("float-infinities", lambda: [math.inf, -math.inf], "exact"),
    ("empty-string", lambda: "", "exact"),
    ("unicode", lambda: "ü 日本語 😀 \u200b", "exact"),
    ("control-chars", lambda: "\x00\x01\n\t\r\x7f", "exact"),
    ("lone-surrogate", lambda: "\ud800", "exact"),
    ("reference-lookalike", lambda: "xcom_s3://not-a-bucket", "exact"),
    (
        "valid-reference-string",
        lambda: "xcom_s3://other-bucket/xcom/d/r/t/-1/k/" + "0" * 32 + ".json#sha256=" + "a" * 64,
        "exact",
    ),
    (
        "row-lookalike",
        lambda: {
            ROW_KEY: "xcom_s3://other-bucket/xcom/d/r/t/-1/k/" + "0" * 32 + ".json#sha256=" + "a" * 64,
            "type": "builtins.int",
            "size_bytes": 2,
            "format": "json",
        },
        "exact",
    ),
    ("string-1MB", lambda: "A" * 1_000_000, "exact"),
    ("empty-list", lambda: [], "exact"),
    ("empty-dict", lambda: {}, "exact"),
    ("nested-200", lambda: _nested(200), "exact"),
    ("nested-mixed", lambda: {"a": {"b": [1, {"c": None, "d": [True, 1, 1.0]}]}}, "exact"),
    ("tuple", lambda: (1, "a", None), "exact"),
    ("tuple-in-dict", lambda: {"t": (1, (2,))}, "exact"),
    ("set", lambda: {1, 2, 3}, "exact"),
    ("frozenset", lambda: frozenset({"x"}), "exact"),
    ("datetime-tz", lambda: dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC), "exact"),
    ("date", lambda: dt.date(1999, 12, 31), "exact"),
    ("timedelta", lambda: dt.timedelta(days=1, microseconds=7), "exact"),
    ("decimal", lambda: decimal.Decimal("3.25"), "exact"),
    ("decimal-beyond-float", lambda: decimal.Decimal("3.14159265358979323846"), TypeError),
    ("uuid", lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"), "exact"),
    ("path-like-keys", lambda: {"../../etc/passwd": 1, "a/b": 2, "..": 3, "": 4}, "exact"),
    ("list-100k-ints", lambda: list(range(100_000)), "exact"),
    ("bool-vs-int", lambda: [True, 1, False, 0], "exact"),
    ("serde-lookalike-keys", lambda: {"__type": "dict", "__varx": 1}, "exact"),
    # What PostgreSQL's JSONB (Airflow's XCom column there) would change: -0.0 and 1e16 come back as
    # 0.0 and an int, keys sorted shorter-first, NUL refused; SQLite stores a bare 2.0 as the integer
    # 2; and a string shaped like the JSON the backends keep in the database themselves.
    ("negative-zero", lambda: -0.0, "exact"),
    ("float-integral", lambda: 2.0, "exact"),
    ("float-1e16", lambda: [1e16, 1.5e300], "exact"),
    ("key-order-not-jsonb", lambda: {"zebra": 1, "b": {"yy": 2, "x": 3}}, "exact"),
    ("nul-in-key", lambda: {"a\x00b": 1}, "exact"),
    ("uint64-max", lambda: 2**64 - 1, "exact"),
    ("wrapped-json-lookalike", lambda: "xcom_json:[1]", "exact"),
    ("complex", lambda: 1 + 2j, TypeError),
    ("object", lambda: object(), TypeError),
    ("int-keys", lambda: {1: "one"}, TypeError),
    ("tuple-keys", lambda: {(1, 2): "pair"}, TypeError),
    ("reserved-key", lambda: {"__classname__": "builtins.int", "__data__": 1}, TypeError),
    ("serde-envelope", lambda: {"__var": 1, "__type": "dict"}, TypeError),
    ("function", lambda: lambda: 1, TypeError),
    ("nested-100k", lambda: _nested(100_000), TypeError),
]


def _tz_times() -> pd.Series:
    return pd.Series(pd.date_range("2026-03-29 00:30", periods=4, freq="30min", tz="Europe/Berlin"))


FRAMES: list[Case] = [
    (
        "frame-basic",
        lambda: pd.DataFrame({"i": [1, 2, 3], "f": [0.1, np.nan, 3.0], "b": [True, False, True]}),
        "exact",
    ),
    (
        "frame-nullable",
        lambda: pd.DataFrame(
            {
                "i": pd.array([1, None, 3], dtype="Int64"),
                "i8": pd.array([None, -128, 127], dtype="Int8"),
                "b": pd.array([True, None, False], dtype="boolean"),
                "f": pd.array([1.5, None, 2.0], dtype="Float64"),
            }
        ),
        "exact",
    ),
    (
        "frame-strings",
        lambda: pd.DataFrame(
            {
                "string": pd.array(["a", None, "ü"], dtype="string"),
                "str": pd.Series(["x", None, "z"], dtype="str"),
                "object": pd.Series(["x", None, "z"], dtype=object),
            }
        ),
        "exact",
    ),
    (
        "frame-category",
        lambda: pd.DataFrame(
            {"c": pd.Categorical(["lo", None, "hi"], categories=["hi", "lo", "unused"], ordered=True)}
        ),
        "exact",
    ),
    (
        "frame-tz-datetime",
        lambda: pd.DataFrame({"t": _tz_times(), "n": pd.NaT}).astype({"n": "datetime64[ns]"}),
        "exact",
    ),
    (
        "frame-timedelta",
        lambda: pd.DataFrame({"d": pd.to_timedelta([1, None, 86_400_000_000_001], unit="us")}),
        "exact",
    ),
    ("frame-named-index", lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index([10, 20], name="id")), "exact"),
    (
        "frame-multiindex-rows",
        lambda: pd.DataFrame(
            {"v": [1.0, 2.0, 3.0]},
            index=pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)], names=["k", "n"]),
        ),
        "exact",
    ),
    (
        "frame-datetimeindex-freq",
        lambda: pd.DataFrame(
            {"a": [1, 2, 3]}, index=pd.date_range("2026-01-01", periods=3, freq="D", name="day")
        ),
        "exact",
    ),
    (
        "frame-multiindex-columns",
        lambda: pd.DataFrame(
            [[1, 2, 3]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y"), ("b", "x")])
        ),
        "exact",
    ),
    ("frame-int-column-names", lambda: pd.DataFrame([[1, 2]]), "exact"),
    ("frame-empty", lambda: pd.DataFrame(), "exact"),
    (
        "frame-zero-rows",
        lambda: pd.DataFrame({"a": pd.Series([], dtype="int32"), "s": pd.Series([], dtype="str")}),
        "exact",
    ),
    (
        "frame-hostile-column-names",
        lambda: pd.DataFrame({"../x": [1], "a/b": [2], "": [3], "日本": [4]}),
        "exact",
    ),
    (
        "frame-attrs",
        lambda: pd.DataFrame({"a": [1]}).pipe(lambda f: f.attrs.update(source="api") or f),
        "exact",
    ),
    (
        "frame-python-objects",
        lambda: pd.DataFrame({"l": [[1, 2], [], None], "d": [{"k": "v"}, None, {"k": "w"}]}),
        "exact",
    ),
    (
        "frame-extreme-numbers",
        lambda: pd.DataFrame(
            {"u": np.array([2**64 - 1, 0], dtype="uint64"), "f32": np.array([1.5, -0.0], dtype="float32")}
        ),
        "exact",
    ),
    (
        "frame-range-index-step",
        lambda: pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(5, 9, 2, name="r")),
        "exact",
    ),
    (
        "frame-200k-rows",
        lambda: pd.DataFrame({"i": np.arange(200_000), "s": np.arange(200_000).astype(str)}),
        "exact",
    ),
    (
        "series-named",
        lambda: pd.Series([1.5, None, 3.0], name="price", index=pd.Index(list("abc"), name="sku")),
        "exact",
    ),
    (
        "series-unnamed-dtindex",
        lambda: pd.Series([1, 2], index=pd.date_range("2026-01-01", periods=2, tz="UTC")),
        "exact",
    ),
    ("series-int-name", lambda: pd.Series(pd.array([1, None], dtype="Int64"), name=7), "exact"),
    ("frame-complex-column", lambda: pd.DataFrame({"c": [1 + 2j]}), TypeError),
    ("frame-mixed-object-column", lambda: pd.DataFrame({"m": [1, "x"]}), TypeError),
    ("frame-duplicate-columns", lambda: pd.DataFrame([[1, 2]], columns=["a", "a"]), TypeError),
]


# Frames a JSON backend refuses, because Airflow's own DataFrame encoding (which those backends use,
# like Airflow's database XCom) would change them; every other frame must round-trip exactly there too.
JSON_BACKEND_REFUSES = {
    "frame-strings",
    "frame-datetimeindex-freq",
    "frame-python-objects",
    "series-named",
    "series-unnamed-dtindex",
    "series-int-name",
}


def _arrow_table() -> pa.Table:
    schema = pa.schema(
        [
            pa.field("i8", pa.int8(), metadata={"unit": "count"}),
            pa.field("u64", pa.uint64(), nullable=False),
            pa.field("s", pa.large_string()),
            pa.field("d", pa.dictionary(pa.int16(), pa.string(), ordered=True)),
            pa.field("t", pa.timestamp("ns", tz="Europe/Berlin")),
            pa.field("dec", pa.decimal128(20, 4)),
            pa.field("l", pa.list_(pa.float32())),
            pa.field("st", pa.struct([("a", pa.int32()), ("b", pa.binary())])),
        ],
        metadata={"source": "api", "ünï": "日本"},
    )
    columns = [
        [None, -128, 127],
        [2**64 - 1, 0, 1],
        ["a", None, "ü"],
        ["lo", None, "hi"],
        [0, None, 1_700_000_000_123_456_789],
        [decimal.Decimal("1.2345"), None, decimal.Decimal("-0.0001")],
        [[1.5, None], None, []],
        [{"a": 1, "b": b"\x00"}, None, {"a": None, "b": None}],
    ]
    return pa.table(columns, schema=schema)


def _dictionaries_per_chunk() -> pa.Table:
    # Two chunks, each with its own dictionary: what an Arrow IPC *file* cannot hold.
    chunks = [pa.array(["x", "y"]).dictionary_encode(), pa.array(["z", None]).dictionary_encode()]
    return pa.table({"c": pa.chunked_array(chunks)})


def _polars_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "i8": pl.Series([1, None, -128], dtype=pl.Int8),
            "u64": pl.Series([2**64 - 1, 0, None], dtype=pl.UInt64),
            "f": [1.5, None, math.nan],
            "s": ["a", None, "ü"],
            "cat": pl.Series(["x", None, "y"], dtype=pl.Categorical),
            "enum": pl.Series(["lo", "hi", None], dtype=pl.Enum(["hi", "lo", "unused"])),
            "dec": pl.Series(
                [decimal.Decimal("1.23"), None, decimal.Decimal("-4.56")], dtype=pl.Decimal(10, 2)
            ),
            "t": pl.Series(
                [dt.datetime(2026, 3, 29, 3, 30), None, dt.datetime(2000, 1, 1)]
            ).dt.replace_time_zone("Europe/Berlin"),
            "td": [dt.timedelta(microseconds=7), None, dt.timedelta(days=1)],
            "date": [dt.date(1999, 12, 31), None, dt.date(1, 1, 1)],
            "time": [dt.time(1, 2, 3), None, dt.time(23, 59, 59, 999_999)],
            "l": [[1, 2], None, []],
            "st": [{"a": 1, "b": "x"}, None, {"a": None, "b": None}],
            "arr": pl.Series([[1, 2], [3, 4], None], dtype=pl.Array(pl.Int32, 2)),
            "bin": [b"\x00", None, b""],
            "null": pl.Series([None, None, None], dtype=pl.Null),
        }
    )


# numpy, pyarrow, polars and bytes values: what a pandas backend must do with each (a JSON backend
# refuses them all, Airflow's JSON encoding having no form for them).
DATA_STACK: list[Case] = [
    ("numpy-2d", lambda: np.arange(12).reshape(3, 4), "exact"),
    ("numpy-0d", lambda: np.array(3.5), "exact"),
    ("numpy-empty", lambda: np.empty((0, 3), dtype="float32"), "exact"),
    ("numpy-fortran", lambda: np.asfortranarray(np.arange(6, dtype="int16").reshape(2, 3)), "exact"),
    ("numpy-bool", lambda: np.array([[True], [False]]), "exact"),
    ("numpy-nan-negative-zero", lambda: np.array([np.nan, -0.0, np.inf, -np.inf]), "exact"),
    ("numpy-complex", lambda: np.array([1 + 2j, np.nan], dtype="complex64"), "exact"),
    (
        "numpy-datetime",
        lambda: np.array(["2026-03-29T01:30:00.123456789", "NaT"], dtype="datetime64[ns]"),
        "exact",
    ),
    ("numpy-timedelta", lambda: np.array([7, "NaT"], dtype="timedelta64[us]"), "exact"),
    ("numpy-big-endian", lambda: np.array([1, 2**31 - 1], dtype=">i4"), "exact"),
    ("numpy-uint64-max", lambda: np.array([2**64 - 1, 0], dtype="uint64"), "exact"),
    (
        "numpy-structured",
        lambda: np.array([(1, 0.5), (2, -1.0)], dtype=[("id", "<i8"), ("score", "<f4")]),
        "exact",
    ),
    ("numpy-unicode", lambda: np.array(["ü", "日本", ""]), "exact"),
    ("numpy-strided-view", lambda: np.arange(20).reshape(4, 5)[::2, 1::2], "exact"),
    ("numpy-8MB", lambda: np.arange(1_000_000, dtype="float64").reshape(100, 100, 100), "exact"),
    ("numpy-object", lambda: np.array([1, "x"], dtype=object), TypeError),
    (
        "numpy-structured-object-field",
        lambda: np.array([(1, None)], dtype=[("a", "i4"), ("o", "O")]),
        TypeError,
    ),
    ("numpy-masked", lambda: np.ma.masked_array([1, 2], mask=[False, True]), TypeError),
    ("arrow-table", _arrow_table, "exact"),
    ("arrow-table-dictionary-per-chunk", _dictionaries_per_chunk, "exact"),
    ("arrow-table-zero-rows", lambda: _arrow_table().slice(0, 0), "exact"),
    ("arrow-record-batch", lambda: _arrow_table().combine_chunks().to_batches()[0], "exact"),
    ("polars-frame", _polars_frame, "exact"),
    ("polars-frame-empty", lambda: pl.DataFrame(), "exact"),
    ("polars-series", lambda: pl.Series("price", [1.5, None, 3.0], dtype=pl.Float32), "exact"),
    ("polars-series-unnamed-categorical", lambda: pl.Series("", ["a", None], dtype=pl.Categorical), "exact"),
    ("polars-lazyframe", lambda: pl.LazyFrame({"a": [1]}), TypeError),
    ("polars-object-column", lambda: pl.DataFrame({"o": pl.Series([object()], dtype=pl.Object)}), TypeError),
    ("bytes", lambda: b"\x00\xff", "exact"),
    ("bytes-empty", lambda: b"", "exact"),
    ("bytes-1MB", lambda: bytes(range(256)) * 4096, "exact"),
    ("bytes-as-bytearray", lambda: bytearray(b"\x00abc"), "exact"),
    ("bytes-in-a-list", lambda: [b"x"], TypeError),
    ("numpy-in-a-dict", lambda: {"a": np.arange(3)}, TypeError),
]


def cases_for(pandas: bool) -> list[Case]:
    """Every value and frame with what a JSON (``pandas`` False) or pandas backend must do with it."""
    frames = [
        (case_id, factory, TypeError if not pandas and case_id in JSON_BACKEND_REFUSES else expected)
        for case_id, factory, expected in FRAMES
    ]
    data = [
        (case_id, factory, expected if pandas else TypeError) for case_id, factory, expected in DATA_STACK
    ]
    return VALUES + frames + data


def check_round_trip(cls: Any, factory: Callable[[], Any], expected: Any, *, in_bucket: bool = True) -> None:
    """Push and pull one case through ``cls``: back exactly, or refused naming task, key and type.
    ``in_bucket``: the value must reach the store (the default threshold, 0)."""
    from include.xcom_backend.reference import Reference
    from tests.support.xcom_calls import pull, push

    value = factory()
    if expected == "exact":
        stored = push(cls, value)
        if in_bucket:
            assert Reference.parse(stored) is not None, (
                "with the default threshold every value reaches the bucket"
            )
        assert_same(value, pull(cls, stored))
        return
    with pytest.raises(expected) as info:
        push(cls, value, task_id="hostile_task", key="hostile_key")
    message = str(info.value)
    assert "hostile_task" in message and "hostile_key" in message
    assert type(value).__name__ in message


def assert_same(expected: Any, actual: Any) -> None:
    """Equal value and equal types, all the way down (True is not 1, a tuple is not a list)."""
    if isinstance(expected, pd.DataFrame):
        assert isinstance(actual, pd.DataFrame), type(actual)
        pd.testing.assert_frame_equal(expected, actual, check_exact=True, check_freq=True, check_flags=True)
        assert actual.attrs == expected.attrs
        return
    if isinstance(expected, pd.Series):
        assert isinstance(actual, pd.Series), type(actual)
        pd.testing.assert_series_equal(expected, actual, check_exact=True, check_freq=True)
        return
    assert type(actual) is type(expected), f"{type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype and actual.dtype.str == expected.dtype.str, actual.dtype
        assert actual.shape == expected.shape and actual.flags.f_contiguous == expected.flags.f_contiguous
        assert np.array_equal(actual, expected, equal_nan=expected.dtype.kind in "fcmM")
        assert actual.tobytes() == expected.tobytes()  # NaN payloads and the sign of -0.0 too
    elif isinstance(expected, pa.Table | pa.RecordBatch):
        assert actual.schema.equals(expected.schema, check_metadata=True), actual.schema
        assert actual.equals(expected, check_metadata=True)
        if isinstance(
            expected, pa.Table
        ):  # the batches too (each with its own dictionaries); Arrow skips empty ones
            chunks = [[len(c) for c in column.chunks if len(c)] for column in expected.columns]
            assert [[len(c) for c in column.chunks] for column in actual.columns] == chunks
    elif isinstance(expected, pl.DataFrame):
        assert actual.schema == expected.schema, actual.schema
        assert actual.equals(expected, null_equal=True)
    elif isinstance(expected, pl.Series):
        assert (actual.name, actual.dtype) == (expected.name, expected.dtype), (actual.name, actual.dtype)
        assert actual.equals(expected, check_dtypes=True, check_names=True, null_equal=True)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, float):
        # -0.0 == 0.0, but a database that drops the sign has changed the value.
        assert actual == expected and math.copysign(1.0, actual) == math.copysign(1.0, expected), actual
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for k in expected:
            assert_same(expected[k], actual[k])
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a)
    else:
        assert actual == expected
