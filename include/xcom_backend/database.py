"""What a value kept in Airflow's metadata database (under the threshold) looks like there.

A value under XCOM_BACKEND_THRESHOLD_BYTES stays in Airflow's `xcom` table instead of the store. On
its way there and back it passes the task's msgpack channel to the supervisor, the Execution API's
JSON over HTTP, and the column itself: JSON on SQLite, JSONB on PostgreSQL (Astro's database).
Each can change or refuse a value:

* JSONB reorders object keys (shorter first, then bytewise), turns numbers into `numeric`: -0.0
  comes back as 0.0, and 1e16 or 1.7976931348623157e308 as integers; it refuses "\\u0000" ("Value
  rejected by database").
* SQLite's JSON column has NUMERIC affinity: a row that is a bare number is stored as one, so 2.0
  and -0.0 come back as the integers 2 and 0, and 2**64 - 1 as a float.
* msgpack refuses integers outside [-2**63, 2**64); the HTTP client refuses NaN and infinities; a
  lone surrogate cannot be encoded as UTF-8 at all; the task's API client refuses JSON nested
  deeper than about 200 levels.

A task does not know which database its deployment uses, so the rule is the same everywhere: a
structure that every one of these keeps unchanged is stored as it is (readable as such in the UI);
any other is stored as its JSON text behind the ``xcom_json:`` prefix, a string that all of them keep
byte for byte. A value of the user's that itself starts with the prefix is always wrapped, so a
wrapped value read back can never be the user's own string.
"""

from __future__ import annotations

import math
from typing import Any

WRAPPED_PREFIX = "xcom_json:"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Well under the ~200 levels pydantic's JSON parser accepts in the API client's responses.
_MAX_DEPTH = 100


def float_is_kept(value: float) -> bool:
    """A float JSONB's numeric gives back as the same float: finite, not -0.0, and not written with
    a positive exponent (1e+16 comes back without a decimal point, so as an integer)."""
    if not math.isfinite(value) or (value == 0.0 and math.copysign(1.0, value) < 0):
        return False
    return "e+" not in repr(value)


def scalar_is_kept(value: Any) -> bool:
    """None, a bool or a 64-bit int: what every database and channel keeps as it is as a whole
    value (the small-value fast path, which skips the JSON codec). A float is not: as a bare number
    SQLite may store it as an integer."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    return kind is int and _INT64_MIN <= value <= _INT64_MAX


def _leaf_is_kept(value: Any) -> bool:
    # Inside a list or dict, where the row is JSON text on SQLite too.
    return float_is_kept(value) if type(value) is float else scalar_is_kept(value)


def _string_is_kept(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _jsonb_key(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


def structure_is_kept(structure: Any) -> bool:
    """Whether Airflow's serialized form of a value survives every database and channel unchanged."""
    if isinstance(structure, str) and structure.startswith(WRAPPED_PREFIX):
        return False
    stack = [(structure, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if not _string_is_kept(item):
                return False
        elif kind is list or kind is dict:
            if depth == _MAX_DEPTH:
                return False
            if kind is dict:
                keys = list(item)
                if not all(type(k) is str and _string_is_kept(k) for k in keys):
                    return False
                if keys != sorted(keys, key=_jsonb_key):
                    return False
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
        elif not (scalar_is_kept(item) if depth == 0 else _leaf_is_kept(item)):
            return False
    return True


def stored_form(structure: Any, json_text: bytes) -> Any:
    """What the database row holds for a value kept there: the structure itself, or its JSON text
    (the codec's, ASCII) behind the prefix."""
    if structure_is_kept(structure):
        return structure
    return WRAPPED_PREFIX + json_text.decode("ascii")


def wrapped_json(raw: Any) -> str | None:
    """The JSON text inside a wrapped value, or None if ``raw`` is not one."""
    if isinstance(raw, str) and raw.startswith(WRAPPED_PREFIX):
        return raw[len(WRAPPED_PREFIX) :]
    return None
