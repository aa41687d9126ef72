"""The row of a stored value: what the UI's XCom tab shows, within 2 KB whatever the value, and still
read back exactly. Values go through the in-memory store and Airflow's real metadata DB round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from include.xcom_backend import XComObjectNotFound, XComReferenceError
from include.xcom_backend.preview import ROW_LIMIT, row, row_bytes
from include.xcom_backend.reference import ROW_KEY, Reference, object_key
from tests.support.xcom_calls import Row, backend_for, pull, push, store_of, through_database

MEMORY = backend_for("memory", pandas=True)


@pytest.fixture(autouse=True)
def _database(xcom_table):
    pass


def _type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _pokemon_frame(rows: int) -> pd.DataFrame:
    # What fetch_pokemon_data_dag's calculate_xp_per_height returns, at a larger size.
    names = ["bulbasaur", "ivysaur", "venusaur", "charmander", "pikachu"]
    frame = pd.DataFrame(
        {
            "pokemon": [names[i % 5] for i in range(rows)],
            "base_experience": np.arange(rows, dtype="int64") % 300 + 60,
            "height": np.arange(rows, dtype="int64") % 20 + 1,
        }
    )
    frame["xp_per_height"] = frame["base_experience"] / frame["height"]
    return frame


def test_a_pokemon_frame_row_shows_shape_columns_and_head_under_2kb():
    frame = _pokemon_frame(1234)
    stored = push(MEMORY, frame)
    store, reference = store_of(stored)

    assert stored[ROW_KEY] == str(reference)
    assert stored["type"] == _type_name(frame)
    assert stored["size_bytes"] == len(store.get(reference.key))
    assert stored["format"] == "feather"
    shown = stored["preview"]
    assert shown["shape"] == [1234, 4]
    assert shown["columns"] == ["pokemon", "base_experience", "height", "xp_per_height"]
    assert shown["dtypes"] == [str(d) for d in frame.dtypes]
    assert shown["head"][:2] == [["bulbasaur", "60", "1", "60.0"], ["ivysaur", "61", "2", "30.5"]]
    assert len(shown["head"]) == 5
    assert row_bytes(stored) <= ROW_LIMIT
    pd.testing.assert_frame_equal(pull(MEMORY, stored), frame, check_exact=True)


def test_a_ten_million_row_frame_row_is_under_2kb():
    frame = pd.DataFrame({"id": np.arange(10_000_000), "score": np.linspace(0, 1, 10_000_000)})
    stored = push(MEMORY, frame)
    assert stored["preview"]["shape"] == [10_000_000, 2]
    assert stored["preview"]["head"][1] == ["1", str(frame["score"].iloc[1])]
    assert row_bytes(stored) <= ROW_LIMIT
    pd.testing.assert_frame_equal(pull(MEMORY, stored), frame, check_exact=True)


def _longest_reference() -> Reference:
    # About 1.1 KB: long ids and key prefix leave the description under half the row.
    key = object_key(
        "xcom/" + "p" * 170,
        dag_id="d" * 250,
        run_id="manual__2026-01-01T00:00:00+00:00" * 6,
        task_id="t" * 250,
        map_index=12345,
        key="k" * 250,
        extension=".json.zst",
    )
    return Reference("memory", "b" * 63, key, "0" * 64)


LONG = _longest_reference()


HOSTILE = {
    "wide-long-names": lambda: pd.DataFrame(
        np.full((2, 2000), "x" * 10_000, dtype=object),
        columns=pd.Index([f"{'c' * 5000}{i}" for i in range(2000)], dtype=object),
    ),
    "long-strings": lambda: pd.DataFrame({"text": ["é" * 1_000_000, "😀" * 500_000]}),
    "nul-in-a-frame": lambda: pd.DataFrame({"\x00" * 100: ["\x00" * 100, "a\x00b"]}),
    "nul-and-surrogates": lambda: {"\x00\ud800" * 50: ["\x00" * 100, "\udfff" * 100]},
    "multiindex": lambda: pd.DataFrame(
        [[1, 2]], columns=pd.MultiIndex.from_tuples([("a" * 900, "b" * 900), ("c", "d")])
    ),
    "nested-cells": lambda: pd.DataFrame({"lists": [list(range(1_000_000)), {"k" * 1000: [[[[1]]]]}]}),
    "series-10M": lambda: pd.Series(np.arange(10_000_000), name="n" * 3000),
    "arrow-table": lambda: pa.table({f"{'a' * 1000}{i}": ["v" * 5000] * 3 for i in range(300)}),
    "numpy-array": lambda: np.zeros((1000, 1000, 3)),
    "dict-many-long-keys": lambda: {f"{'k' * 2000}{i}": "v" * 2000 for i in range(100_000)},
    "list-long-items": lambda: ["x" * 1_000_000 for _ in range(20)],
    "list-of-dicts": lambda: [{"a" * 500: {"b" * 500: ["c" * 500] * 500}}] * 10,
    "string-10MB": lambda: "ü" * 10_000_000,
    "bytes": lambda: b"\x00" * 1000,
    "custom-class-with-long-name": lambda: type("C" * 5000, (), {})(),
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_every_row_is_under_2kb_and_kept_by_the_database(make):
    value = make()
    stored = row(LONG, value, size=123_456_789)
    assert row_bytes(stored) <= ROW_LIMIT, row_bytes(stored)
    assert stored[ROW_KEY] == str(LONG) and stored["size_bytes"] == 123_456_789
    assert stored["type"].startswith(type(value).__module__)
    # The database and the task's channel give the row back unchanged (no NUL, surrogate or float in it).
    assert through_database(stored) == stored


def test_a_polars_frame_shows_its_shape_columns_and_head():
    pl = pytest.importorskip("polars", reason="polars is not installed here")
    frame = pl.DataFrame({"a": list(range(1000)), "b": ["x" * 100] * 1000})
    shown = row(LONG, frame, size=1)["preview"]
    assert shown["shape"] == [1000, 2] and shown["columns"] == ["a", "b"]
    assert shown["dtypes"] == [str(pl.Int64), str(pl.String)] and shown["head"][0][0] == "0"


def test_lists_and_dicts_show_their_length_and_first_keys_scalars_their_value():
    assert row(LONG, 7, size=1)["preview"] == {"value": "7"}
    assert row(LONG, {3, 1}, size=1)["preview"]["length"] == 2
    assert row(LONG, {"b": 1, "a": 2, "c": 3}, size=1)["preview"] == {"length": 3, "keys": ["b", "a", "c"]}
    assert row(LONG, [1, "two", None], size=1)["preview"] == {"length": 3, "head": ["1", "two", "None"]}


def test_the_preview_setting_turns_it_off_but_type_size_and_format_remain(monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__PREVIEW", "false")
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__COMPRESSION", "gzip")
    stored = push(backend_for("memory"), {"secret": "not for the UI"})
    assert set(stored) == {"type", "size_bytes", "format", ROW_KEY}
    assert (stored["type"], stored["format"]) == ("builtins.dict", "json.gz")
    assert "secret" not in str(stored)
    assert pull(backend_for("memory"), stored) == {"secret": "not for the UI"}


def test_the_rest_api_and_ui_show_the_row_as_it_is():
    from airflow.serialization.stringify import stringify

    stored = push(MEMORY, _pokemon_frame(10))
    # What api_fastapi's xcom route returns with deserialize=true (the UI's XCom tab).
    assert stringify(stored) == stored


def test_an_old_row_the_bare_reference_string_still_reads_back():
    frame = _pokemon_frame(7)
    stored = push(MEMORY, frame)
    pd.testing.assert_frame_equal(pull(MEMORY, through_database(stored[ROW_KEY])), frame, check_exact=True)


def test_a_users_dict_that_looks_like_a_row_is_stored_never_taken_for_one(monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", "1000000")
    other = push(MEMORY, _pokemon_frame(3))
    lookalike = dict(other)  # a real, readable reference to another value, in the row's own shape
    stored = push(MEMORY, lookalike)
    assert stored != lookalike and Reference.parse(stored) != Reference.parse(other)
    assert stored["type"] == "builtins.dict" and stored["format"] == "json"
    assert pull(MEMORY, stored) == lookalike
    # Without the row's key, the same small dict stays in the database.
    plain = {k: v for k, v in lookalike.items() if k != ROW_KEY}
    kept = push(MEMORY, plain)
    assert Reference.parse(kept) is None and pull(MEMORY, kept) == plain


def test_a_damaged_row_is_an_error_naming_it():
    with pytest.raises(XComReferenceError, match=ROW_KEY) as info:
        pull(MEMORY, {ROW_KEY: "xcom_memory://not-a-reference", "type": "builtins.int"})
    assert "not-a-reference" in str(info.value)


def test_purge_deletes_the_object_a_row_names():
    stored = push(MEMORY, _pokemon_frame(3))
    store, reference = store_of(stored)
    MEMORY.purge(Row(stored))
    with pytest.raises(XComObjectNotFound):
        store.get(reference.key)
