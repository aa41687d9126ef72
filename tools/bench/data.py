"""The values the benchmark passes: a mixed-dtype frame and a small dict of task metadata."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """The benchmark frame: int64, float64, int32, string, tz-aware datetime, category and bool columns.

    Values are random (ids, amounts, seconds of a year) so Parquet cannot shrink them to nothing; the
    strings come from a pool of up to 100,000 distinct names, a typical cardinality for a text column.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    pool_size = max(1, min(rows, 100_000))
    names = np.array(
        [f"customer-{i:06d}-{chr(97 + i % 26) * (1 + i % 11)}" for i in range(pool_size)], dtype=object
    )
    start = pd.Timestamp("2026-01-01", tz="UTC")
    seconds = pd.to_timedelta(rng.integers(0, 365 * 86_400, rows), unit="s")
    return pd.DataFrame(
        {
            "id": rng.integers(0, 2**62, rows, dtype=np.int64),
            "amount": rng.standard_normal(rows) * 100.0,
            "quantity": rng.integers(0, 10_000, rows, dtype=np.int32),
            "customer": pd.array(names[rng.integers(0, pool_size, rows)], dtype="str"),
            "created_at": (start + seconds).tz_convert("Europe/Paris"),
            "status": pd.Categorical.from_codes(
                rng.integers(0, 5, rows), categories=["new", "paid", "shipped", "returned", "cancelled"]
            ),
            "flag": rng.random(rows) < 0.3,
        }
    )


def make_bytes(size: int, seed: int = 0) -> bytes:
    """`size` random bytes, the same for the same seed (the memory pass rebuilds what the parent timed).

    Random, so no store or transport along the way can shrink them.
    """
    import numpy as np

    return np.random.default_rng(seed).bytes(size)


def small_dict(target_bytes: int = 1024) -> dict[str, Any]:
    """A dict whose Airflow JSON encoding is about ``target_bytes`` long, shaped like task metadata."""
    from airflow.sdk.serde import serialize

    value: dict[str, Any] = {"run": "scheduled__2026-11-21T00:00:00+00:00", "rows": 1_000_000, "ok": True}
    files: list[dict[str, Any]] = []
    value["files"] = files
    i = 0
    while len(json.dumps(serialize(value), separators=(",", ":"))) < target_bytes - 40:
        files.append({"name": f"part-{i:04d}.parquet", "bytes": 1_048_576 + i, "ratio": 0.25})
        i += 1
    return value
