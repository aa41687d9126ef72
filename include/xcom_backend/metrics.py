"""Metrics an operator can alert on, sent through Airflow's own ``Stats``: StatsD or OpenTelemetry,
whichever the deployment configured under ``[metrics]`` (nothing is sent when neither is on).

Every name is ``xcom_backend.<store>.<metric>``, the store being the reference's scheme (s3, gcs,
wasb, minio): plain StatsD has no tags, so the store is in the name; backends that take tags also get
``store=<scheme>``. ``METRICS`` is the one list of them; docs/operating.md's table is checked
against it by tests/e2e/test_metrics.py.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from include.xcom_backend import errors

PREFIX = "xcom_backend"

# metric -> (StatsD type, what it counts)
METRICS: dict[str, tuple[str, str]] = {
    "push": ("counter", "values written to the store (a mirror's value counts once, under its first store)"),
    "push_bytes": ("counter", "bytes written, after compression"),
    "push_duration": ("timer", "milliseconds to write one value, every copy included"),
    "pull": ("counter", "values read back from the store and verified"),
    "pull_bytes": ("counter", "bytes read"),
    "pull_duration": ("timer", "milliseconds to read and verify one value"),
    "kept_in_db": ("counter", "values the threshold kept in Airflow's database instead of the store"),
    "error.not_found": ("counter", "pulls whose object, or pushes whose bucket, does not exist"),
    "error.integrity": ("counter", "pulls whose bytes do not match the reference's checksum"),
    "error.unreachable": ("counter", "calls the store did not answer, after every attempt"),
    "error.denied": ("counter", "calls the store refused (credentials, permissions)"),
    "error.other": ("counter", "any other storage error (a reference that cannot be resolved, ...)"),
}

# Most specific first: XComBucketNotFound is no XComObjectNotFound, but both are "not found".
_ERROR_KINDS: tuple[tuple[type[errors.XComStorageError], str], ...] = (
    (errors.XComObjectNotFound, "error.not_found"),
    (errors.XComBucketNotFound, "error.not_found"),
    (errors.XComIntegrityError, "error.integrity"),
    (errors.XComStoreUnreachable, "error.unreachable"),
    (errors.XComAccessDenied, "error.denied"),
)


def name(store: str, metric: str) -> str:
    """The full name of ``metric`` for ``store``."""
    if metric not in METRICS:
        raise KeyError(f"{metric!r} is not one of the backend's metrics ({', '.join(METRICS)})")
    return f"{PREFIX}.{store}.{metric}"


def error_metric(error: errors.XComStorageError) -> str:
    """The error counter an exception is counted under."""
    return next((metric for kind, metric in _ERROR_KINDS if isinstance(error, kind)), "error.other")


def _stats() -> Any:
    # Imported late: Airflow's shim, set up by the task runner from the [metrics] section.
    from airflow.sdk.observability.stats import Stats

    return Stats


def sending() -> bool:
    """Whether Airflow's Stats sends anywhere. Its calls look every name up in Airflow's metrics
    registry even when nothing is configured (about 3 µs a counter, more than keeping a small value in
    the database costs), so nothing is built for a logger that drops everything."""
    # The backend the task runner's `initialize` chose, built on first use as Stats itself does.
    backend, dropping = _stats_backend()
    return not isinstance(backend(), dropping)


@functools.cache
def _stats_backend() -> tuple[Callable[[], object], type]:
    from airflow.sdk._shared.observability.metrics import base_stats_logger, stats

    return stats._get_backend, base_stats_logger.NoStatsLogger


def incr(store: str, metric: str, count: int = 1) -> None:
    if sending():
        _stats().incr(name(store, metric), count, tags={"store": store})


def timing(store: str, metric: str, seconds: float) -> None:
    if sending():
        _stats().timing(name(store, metric), seconds * 1000.0, tags={"store": store})


@dataclass
class Measure:
    """What a measured push or pull moved, and against which store; set by the caller."""

    store: str
    bytes: int = 0


@contextmanager
def measured(operation: str, store: str) -> Iterator[Measure]:
    """Count, time and size one ``push`` or ``pull`` against ``store``; a storage error raised inside
    is counted by kind, under the store that failed (``Measure.store``), and raised on unchanged."""
    measure = Measure(store)
    start = time.perf_counter()
    try:
        yield measure
    except errors.XComStorageError as exc:
        incr(measure.store, error_metric(exc))
        raise
    seconds = time.perf_counter() - start
    incr(store, operation)
    incr(store, f"{operation}_bytes", measure.bytes)
    timing(store, f"{operation}_duration", seconds)
