"""Summaries of repeated measurements, computed by pytest-benchmark's statistics class."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_benchmark.stats import Stats

# What each summary in bench.json holds: the median for ratios and tables, IQR and stddev for the spread.
FIELDS = ("median", "iqr", "stddev", "min", "max", "mean", "rounds")


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, IQR, stddev, min, max, mean and number of rounds of `values` (at least one)."""
    stats = Stats()
    for value in values:
        stats.update(value)
    if not stats:
        raise ValueError("no measurements to summarise")
    return {field: getattr(stats, field) for field in FIELDS}


def rotated(items: list[str], by: int) -> list[str]:
    """`items` started at position `by`."""
    # Each repeat starts with another method, so a slow spell of a shared machine hits all of them.
    by %= len(items)
    return items[by:] + items[:by]
