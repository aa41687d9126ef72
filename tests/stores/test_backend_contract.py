"""One contract for every backend class, against the real local servers (store x codec)."""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest

from include.xcom_backend import (
    ObjectStoreXComBackend,
    XComIntegrityError,
    XComObjectNotFound,
    XComReferenceError,
)
from include.xcom_backend.catalog import ALL_BACKENDS
from include.xcom_backend.database import WRAPPED_PREFIX
from include.xcom_backend.reference import ROW_KEY, Reference
from include.xcom_backend.registry import open_store
from tests.support import xcom_calls
from tests.support.hostile_values import assert_same, cases_for, check_round_trip
from tests.support.xcom_calls import Row, load, pull, store_of

pytestmark = pytest.mark.stores

# dotted path -> whether it stores pandas objects. The tutorial's eight, plus the mirror.
BACKENDS = {path: path.endswith("Pandas") for path in ALL_BACKENDS}
PANDAS_BACKENDS = [path for path, pandas in BACKENDS.items() if pandas]

RUN_ID = "manual__2026-11-21T12:00:00.123456+00:00"


def push(cls: type[ObjectStoreXComBackend], value: Any, **ids: Any) -> Any:
    # A real run id, with the `:` and `+` every key must survive.
    return xcom_calls.push(cls, value, **({"dag_id": "contract", "run_id": RUN_ID} | ids))


@pytest.fixture(autouse=True)
def _isolated(local_stores, xcom_table, monkeypatch):
    """Every test writes under its own key prefix in the default buckets."""
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__KEY_PREFIX", f"contract/{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module", autouse=True)
def _default_buckets(local_stores):
    try:
        local_stores.create_default_buckets()
    except Exception as exc:  # another module created them first in this session
        if "Already" not in type(exc).__name__ + str(exc):
            raise


def _cases() -> list:
    return [
        pytest.param(path, factory, expected, id=f"{path.rsplit('.', 1)[1]}-{case_id}")
        for path, is_pandas in BACKENDS.items()
        for case_id, factory, expected in cases_for(is_pandas)
    ]


# The README's advice for production: values under 64 KiB stay in Airflow's database.
PRODUCTION_THRESHOLD = "65536"


# At the production threshold the catalogue runs as CI's `make test-slow` step, which keeps
# `make test` within its time (and in test-postgres on the S3 backends: the Makefile's POSTGRES_CATALOGUE).
@pytest.mark.parametrize(
    "threshold",
    ["0", pytest.param(PRODUCTION_THRESHOLD, marks=pytest.mark.slow)],
    ids=lambda t: f"threshold{t}",
)
@pytest.mark.parametrize(("path", "factory", "expected"), _cases())
def test_catalogue_round_trips_exactly_or_fails_clearly(path, factory, expected, threshold, monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", threshold)
    check_round_trip(load(path), factory, expected, in_bucket=threshold == "0")


@pytest.mark.parametrize("path", BACKENDS)
def test_reference_names_store_bucket_and_a_safe_key(path):
    cls = load(path)
    stored = push(cls, {"a": 1}, task_id="my.task", key="../../escape", map_index=3)
    store, reference = store_of(stored)
    expected_scheme = cls.stores[0]
    assert stored[ROW_KEY].startswith(f"xcom_{expected_scheme}://")
    assert reference.bucket == open_store(cls.stores[0]).bucket
    segments = reference.key.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert "contract" in segments and "my.task" in segments and "3" in segments
    assert ":" not in reference.key and "+" not in reference.key
    assert store.get(reference.key)  # the object is where the reference says


@pytest.mark.parametrize("path", BACKENDS)
def test_purge_deletes_the_object(path):
    cls = load(path)
    stored = push(cls, [1, 2, 3])
    store, reference = store_of(stored)
    cls.purge(Row(stored))
    with pytest.raises(XComObjectNotFound):
        store.get(reference.key)
    cls.purge(Row(stored))  # purging twice (a retried cleanup) is harmless
    cls.purge(Row(42))  # and a value kept in the database has nothing to purge


@pytest.mark.parametrize("path", BACKENDS)
def test_missing_object_raises_naming_reference_and_bucket(path):
    cls = load(path)
    stored = push(cls, {"gone": True})
    store, reference = store_of(stored)
    for target in [store] + [open_store(scheme) for scheme in cls.stores[1:]]:
        target.delete(reference.key)  # deleted out of band, on every copy
    with pytest.raises(XComObjectNotFound) as info:
        pull(cls, stored)
    assert str(reference) in str(info.value) and reference.bucket in str(info.value)
    for copy in cls.stores[1:]:  # a mirror names every store it tried, in order
        assert open_store(copy).url(reference.key) in str(info.value)


@pytest.mark.parametrize("path", BACKENDS)
def test_corrupted_object_raises(path):
    cls = load(path)
    stored = push(cls, {"amount": 100})
    store, reference = store_of(stored)
    store.put(reference.key, b'{"amount":999}', content_type="application/json", metadata={})
    with pytest.raises(XComIntegrityError) as info:
        pull(cls, stored)
    assert reference.key in str(info.value)


@pytest.mark.parametrize("path", BACKENDS)
def test_64_concurrent_pushes_give_64_objects_and_values(path):
    cls = load(path)

    def one(i: int) -> tuple[int, Any]:
        return i, push(cls, {"i": i, "payload": "x" * i}, task_id="fan_out", map_index=i % 8)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(64)))
    references = {str(Reference.parse(stored)) for _, stored in results}
    assert len(references) == 64
    with ThreadPoolExecutor(max_workers=16) as pool:
        values = list(pool.map(lambda r: (r[0], pull(cls, r[1])), results))
    for i, value in values:
        assert value == {"i": i, "payload": "x" * i}


@pytest.mark.parametrize("path", BACKENDS)
def test_mapped_task_instances_get_distinct_keys(path):
    cls = load(path)
    stored = [push(cls, i, task_id="mapped", map_index=i) for i in range(6)]
    keys = [store_of(s)[1].key for s in stored]
    assert len(set(keys)) == 6
    for i, key in enumerate(keys):
        assert f"/mapped/{i}/return_value/" in key
        assert pull(cls, stored[i]) == i


@pytest.mark.parametrize("path", BACKENDS)
def test_threshold_keeps_small_values_in_the_database(path, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", "1024")
    small = push(cls, {"small": True})
    assert small == {"small": True}
    assert pull(cls, small) == {"small": True}
    large = push(cls, {"large": "x" * 2000})
    assert Reference.parse(large) is not None
    # A string that looks like a reference is never left in the database, however small.
    lookalike = "xcom_gcs://b/k"
    stored = push(cls, lookalike)
    assert Reference.parse(stored) is not None
    assert pull(cls, stored) == lookalike


# Small values Airflow's database or its task channel would change or refuse if kept as they are.
DATABASE_WOULD_CHANGE = {
    "key-order": {"zebra": 1, "a": 2},
    "negative-zero": -0.0,
    "bare-float": 2.0,
    "float-1e16": 1e16,
    "nan": math.nan,
    "infinity": [math.inf],
    "nul": "a\x00b",
    "lone-surrogate": "\ud800",
    "int-beyond-int64": 2**63,
    "tuple": (1, "a"),
    "wrapped-lookalike": WRAPPED_PREFIX + "1",
}
# And values every one of them keeps: stored as they are, as Airflow would store them.
DATABASE_KEEPS = {
    "jsonb-ordered-dict": {"a": 1, "bb": [1, 2.5, None, True], "ccc": {"x": "ü"}},
    "int64-max": 2**63 - 1,
    "floats-in-a-list": [1e-7, 2.0, 0.1],
    "text": "plain ü 😀",
    "empty": [],
}


@pytest.mark.parametrize("path", BACKENDS)
@pytest.mark.parametrize("value", DATABASE_WOULD_CHANGE.values(), ids=DATABASE_WOULD_CHANGE)
def test_under_the_threshold_what_a_database_would_change_is_kept_as_json_text(path, value, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", PRODUCTION_THRESHOLD)
    stored = push(cls, value)
    assert isinstance(stored, str) and stored.startswith(WRAPPED_PREFIX), stored
    assert_same(value, pull(cls, stored))


@pytest.mark.parametrize("path", BACKENDS)
@pytest.mark.parametrize("value", DATABASE_KEEPS.values(), ids=DATABASE_KEEPS)
def test_under_the_threshold_what_every_database_keeps_is_stored_as_it_is(path, value, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", PRODUCTION_THRESHOLD)
    stored = push(cls, value)
    assert_same(value, stored)  # what the UI shows
    assert_same(value, pull(cls, stored))


@pytest.mark.parametrize("path", BACKENDS)
def test_a_wrapped_value_that_is_not_json_is_an_error_not_data(path):
    with pytest.raises(XComReferenceError, match="not valid JSON"):
        pull(load(path), WRAPPED_PREFIX + "{not json")


@pytest.mark.parametrize("path", PANDAS_BACKENDS)
def test_frames_go_to_the_store_even_under_the_threshold(path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", "1000000")
    frame = pd.DataFrame({"a": pd.array([1, None], dtype="Int64")})
    stored = push(load(path), frame)
    assert Reference.parse(stored).extension == xcom_calls.FRAME_EXTENSION
    assert_same(frame, pull(load(path), stored))


@pytest.mark.parametrize("path", ["include.s3_xcom_backend_json.S3XComBackendJSON", *PANDAS_BACKENDS])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compression_is_applied_and_inferred_on_read(path, compression, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__COMPRESSION", compression)
    value = {"text": "abc" * 10_000}
    stored = push(cls, value)
    store, reference = store_of(stored)
    suffix = {"gzip": ".json.gz", "zstd": ".json.zst"}[compression]
    assert reference.extension == suffix
    assert len(store.get(reference.key)) < 2_000
    monkeypatch.delenv("AIRFLOW__XCOM_BACKEND__COMPRESSION")  # the reader needs no setting
    assert pull(cls, stored) == value


@pytest.mark.parametrize("path", PANDAS_BACKENDS)
def test_csv_option_is_the_tutorials_lossy_format(path, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__PANDAS_FORMAT", "csv")
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__COMPRESSION", "gzip")
    frame = pd.DataFrame(
        {"pokemon": ["pikachu", "vulpix"], "xp": [112, 60], "n": pd.array([1, None], dtype="Int64")}
    )
    stored = push(cls, frame)
    assert Reference.parse(stored).extension == ".csv.gz"
    back = pull(cls, stored)
    pd.testing.assert_frame_equal(back[["pokemon", "xp"]], frame[["pokemon", "xp"]], check_dtype=False)
    # The documented loss: the nullable integer column comes back as float.
    assert back["n"].dtype == "float64"
