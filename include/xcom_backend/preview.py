"""What the database row of a stored value says about it: the row the UI's XCom tab shows.

Airflow 3.3's UI and REST API read the row and never call the backend, so the row carries, next to
the reference the backend reads back, the value's Python type, its stored size and format and,
unless the ``preview`` setting is off, a small description: shape, columns, dtypes and first rows of
a table, length and first keys or items of a collection. The row is at most ``ROW_LIMIT`` bytes as
JSON whatever the value: the description is built again with smaller budgets until it fits.

Everything in the description is a string or a whole number, so no database or channel on the way
changes it (database.py): floats, NaN and user strings would otherwise be rounded or refused.
Nothing here imports pandas, pyarrow, polars or numpy; a value's module says which it is.
"""

from __future__ import annotations

import itertools
import json
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from include.xcom_backend.reference import ROW_KEY, Reference

# Bytes of the row's JSON with ASCII escapes, the longest spelling any database gives it back in.
ROW_LIMIT = 2048
_TYPE_CHARS = 200  # a class's qualified name, so that the reference and type always fit


@dataclass(frozen=True)
class Budget:
    """How much of a value one attempt describes."""

    rows: int  # first rows of a table, items of a list
    columns: int  # columns of a table, keys of a dict
    chars: int  # characters of one cell, item or name


# Tried in order; the first description whose row fits is kept.
BUDGETS = (
    Budget(rows=5, columns=12, chars=40),
    Budget(rows=3, columns=8, chars=24),
    Budget(rows=2, columns=5, chars=16),
    Budget(rows=1, columns=3, chars=12),
    Budget(rows=0, columns=2, chars=12),
)


def row(reference: Reference, value: Any, *, size: int, preview: bool = True) -> dict[str, Any]:
    """The database row of ``value``, stored under ``reference`` as ``size`` bytes."""
    # What the value is comes first: the UI's JSON view shows the first 15 lines or so unscrolled
    # (SQLite keeps this order; PostgreSQL's JSONB puts shorter keys first).
    described: dict[str, Any] = {
        "type": _text(f"{type(value).__module__}.{type(value).__qualname__}", _TYPE_CHARS),
        "size_bytes": size,
        "format": reference.extension.lstrip("."),
    }
    if preview:
        describe = _describer(value)
        for budget in BUDGETS:
            candidate = {**described, "preview": describe(value, budget), ROW_KEY: str(reference)}
            if row_bytes(candidate) <= ROW_LIMIT:
                return candidate
    return {**described, ROW_KEY: str(reference)}


def row_bytes(row: dict[str, Any]) -> int:
    """The size the ``ROW_LIMIT`` applies to."""
    return len(json.dumps(row, ensure_ascii=True).encode("ascii"))


# --- text of cells, names and items -----------------------------------------------------------------
_repr = reprlib.Repr()
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdict = 3


def _text(value: Any, chars: int) -> str:
    """At most ``chars`` characters saying what ``value`` is; every database keeps it as it is."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple | dict | set | frozenset):
        # A bounded repr: a cell holding a long list costs no more than a short one.
        _repr.maxstring = _repr.maxother = chars
        text = _repr.repr(value)
    else:
        text = str(value)
    if len(text) > chars:
        text = text[: max(chars - 1, 1)] + "…"
    # NUL is refused by PostgreSQL's JSONB and a lone surrogate by UTF-8: spell them as escapes.
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _texts(values: Any, chars: int) -> list[str]:
    return [_text(v, chars) for v in values]


# --- one describer per kind of value ------------------------------------------------------------
def _pandas_frame(frame: Any, budget: Budget) -> dict[str, Any]:
    part = frame.iloc[: budget.rows, : budget.columns]
    return {
        "shape": list(frame.shape),
        "columns": _texts(part.columns, budget.chars),
        "dtypes": _texts(part.dtypes, budget.chars),
        "head": [_texts(r, budget.chars) for r in part.itertuples(index=False, name=None)],
    }


def _pandas_series(series: Any, budget: Budget) -> dict[str, Any]:
    return {
        "shape": list(series.shape),
        "name": _text(series.name, budget.chars),
        "dtype": _text(series.dtype, budget.chars),
        "head": _texts(series.iloc[: budget.rows].tolist(), budget.chars),
    }


def _arrow_table(table: Any, budget: Budget) -> dict[str, Any]:
    fields = list(table.schema)[: budget.columns]
    # By position: names may repeat in an Arrow schema.
    head = table.select(list(range(len(fields)))).slice(0, budget.rows).to_pylist() if fields else []
    return {
        "shape": [table.num_rows, table.num_columns],
        "columns": _texts((f.name for f in fields), budget.chars),
        "dtypes": _texts((f.type for f in fields), budget.chars),
        "head": [_texts(r.values(), budget.chars) for r in head],
    }


def _polars_frame(frame: Any, budget: Budget) -> dict[str, Any]:
    part = frame[:, : budget.columns].head(budget.rows)
    return {
        "shape": list(frame.shape),
        "columns": _texts(part.columns, budget.chars),
        "dtypes": _texts(part.dtypes, budget.chars),
        "head": [_texts(r, budget.chars) for r in part.rows()],
    }


def _polars_series(series: Any, budget: Budget) -> dict[str, Any]:
    return {
        "shape": [len(series)],
        "name": _text(series.name, budget.chars),
        "dtype": _text(series.dtype, budget.chars),
        "head": _texts(series.head(budget.rows).to_list(), budget.chars),
    }


def _numpy_array(array: Any, budget: Budget) -> dict[str, Any]:
    return {
        "shape": list(array.shape),
        "dtype": _text(array.dtype, budget.chars),
        "head": _texts(array.reshape(-1)[: budget.rows].tolist(), budget.chars),
    }


def _mapping(value: dict, budget: Budget) -> dict[str, Any]:
    keys = []
    for key in value:  # not list(value): a dict of millions of keys is read only this far
        if len(keys) == budget.columns:
            break
        keys.append(key)
    return {"length": len(value), "keys": _texts(keys, budget.chars)}


def _sequence(value: list | tuple | set | frozenset, budget: Budget) -> dict[str, Any]:
    return {"length": len(value), "head": _texts(itertools.islice(value, budget.rows), budget.chars)}


def _string(value: str, budget: Budget) -> dict[str, Any]:
    return {"length": len(value), "head": _text(value, budget.chars * max(budget.rows, 1))}


def _binary(value: bytes | bytearray, budget: Budget) -> dict[str, Any]:
    return {"length": len(value)}


def _scalar(value: Any, budget: Budget) -> dict[str, Any]:
    # Numbers, dates, uuids, decimals: what the JSON codec takes besides containers and strings.
    return {"value": _text(value, budget.chars)}


# By (module prefix, class name); the class's own module may be a submodule (pandas.core.frame).
_BY_CLASS: dict[tuple[str, str], Callable[[Any, Budget], dict[str, Any]]] = {
    ("pandas", "DataFrame"): _pandas_frame,
    ("pandas", "Series"): _pandas_series,
    ("pyarrow", "Table"): _arrow_table,
    ("pyarrow", "RecordBatch"): _arrow_table,
    ("polars", "DataFrame"): _polars_frame,
    ("polars", "Series"): _polars_series,
    ("numpy", "ndarray"): _numpy_array,
}


def _describer(value: Any) -> Callable[[Any, Budget], dict[str, Any]]:
    for cls in type(value).__mro__:
        package = cls.__module__.split(".", 1)[0]
        found = _BY_CLASS.get((package, cls.__name__))
        if found is not None:
            return found
    if isinstance(value, dict):
        return _mapping
    if isinstance(value, list | tuple | set | frozenset):
        return _sequence
    if isinstance(value, str):
        return _string
    if isinstance(value, bytes | bytearray):
        return _binary
    return _scalar
