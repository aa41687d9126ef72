"""One contract for every backend class, against the real local servers (store x codec)."""

from __future__ import annotations

import json
import re
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
from include.xcom_backend.reference import Reference
from include.xcom_backend.stores.base import ObjectStore
from tests import xcom_calls
from tests.catalogue import FRAMES, JSON_BACKEND_REFUSES, VALUES, assert_same
from tests.xcom_calls import Row, load, pull, store_of

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
    """Every test writes under its own key prefix in the default buckets, with fresh clients."""
    monkeypatch.setenv("XCOM_BACKEND_KEY_PREFIX", f"contract/{uuid.uuid4().hex[:10]}")
    for name in ("XCOM_BACKEND_THRESHOLD_BYTES", "XCOM_BACKEND_COMPRESSION", "XCOM_BACKEND_PANDAS_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    ObjectStore._instances.clear()
    yield
    ObjectStore._instances.clear()


@pytest.fixture(scope="module", autouse=True)
def _default_buckets(local_stores):
    try:
        local_stores.create_default_buckets()
    except Exception as exc:  # another module created them first in this session
        if "Already" not in type(exc).__name__ + str(exc):
            raise


def _cases() -> list:
    cases = []
    for path, is_pandas in BACKENDS.items():
        for case_id, factory, expected in VALUES:
            cases.append(pytest.param(path, factory, expected, id=f"{path.rsplit('.', 1)[1]}-{case_id}"))
        for case_id, factory, expected in FRAMES:
            outcome = TypeError if not is_pandas and case_id in JSON_BACKEND_REFUSES else expected
            cases.append(pytest.param(path, factory, outcome, id=f"{path.rsplit('.', 1)[1]}-{case_id}"))
    return cases


@pytest.mark.parametrize(("path", "factory", "expected"), _cases())
def test_catalogue_round_trips_exactly_or_fails_clearly(path, factory, expected):
    cls = load(path)
    value = factory()
    if expected == "exact":
        stored = push(cls, value)
        assert Reference.parse(stored) is not None, (
            "with the default threshold every value reaches the bucket"
        )
        assert_same(value, pull(cls, stored))
    else:
        with pytest.raises(expected) as info:
            push(cls, value, task_id="hostile_task", key="hostile_key")
        message = str(info.value)
        assert "hostile_task" in message and "hostile_key" in message
        assert type(value).__name__ in message


@pytest.mark.parametrize("path", BACKENDS)
def test_reference_names_store_bucket_and_a_safe_key(path):
    cls = load(path)
    stored = push(cls, {"a": 1}, task_id="my.task", key="../../escape", map_index=3)
    store, reference = store_of(stored)
    expected_scheme = cls.stores[0]().scheme
    assert stored.startswith(f"xcom_{expected_scheme}://")
    assert reference.bucket == cls.stores[0]().bucket
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
    for target in [store] + [f() for f in cls.stores[1:]]:
        target.delete(reference.key)  # deleted out of band, on every copy
    with pytest.raises(XComObjectNotFound) as info:
        pull(cls, stored)
    assert str(reference) in str(info.value) and reference.bucket in str(info.value)


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
@pytest.mark.parametrize(
    "value",
    [42, "plain", {"a": [1, 2]}, None, "xcom_s3:/almost", pd.Timestamp("2026-01-01").to_pydatetime()],
    ids=["int", "str", "dict", "none", "near-prefix", "datetime"],
)
def test_values_airflow_wrote_to_the_database_pass_through(path, value):
    from airflow.sdk.bases.xcom import BaseXCom

    stored = json.loads(json.dumps(BaseXCom.serialize_value(value)))
    assert_same(value, pull(load(path), stored))


@pytest.mark.parametrize("path", BACKENDS)
def test_a_reference_in_another_format_is_an_error_not_data(path):
    legacy = "xcom_s3://manual__2026-01-01/extract/data_1b4e28ba-2fa1-11d2-883f-0016d3cca427.json"
    with pytest.raises(XComReferenceError, match="format"):
        pull(load(path), legacy)


@pytest.mark.parametrize("path", BACKENDS)
def test_64_concurrent_pushes_give_64_objects_and_values(path):
    cls = load(path)

    def one(i: int) -> tuple[int, Any]:
        return i, push(cls, {"i": i, "payload": "x" * i}, task_id="fan_out", map_index=i % 8)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(64)))
    references = {stored for _, stored in results}
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
    monkeypatch.setenv("XCOM_BACKEND_THRESHOLD_BYTES", "1024")
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


@pytest.mark.parametrize("path", PANDAS_BACKENDS)
def test_frames_go_to_the_store_even_under_the_threshold(path, monkeypatch):
    monkeypatch.setenv("XCOM_BACKEND_THRESHOLD_BYTES", "1000000")
    frame = pd.DataFrame({"a": pd.array([1, None], dtype="Int64")})
    stored = push(load(path), frame)
    assert Reference.parse(stored).extension == ".parquet"
    assert_same(frame, pull(load(path), stored))


@pytest.mark.parametrize("path", ["include.s3_xcom_backend_json.S3XComBackendJSON", *PANDAS_BACKENDS])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compression_is_applied_and_inferred_on_read(path, compression, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("XCOM_BACKEND_COMPRESSION", compression)
    value = {"text": "abc" * 10_000}
    stored = push(cls, value)
    store, reference = store_of(stored)
    suffix = {"gzip": ".json.gz", "zstd": ".json.zst"}[compression]
    assert reference.extension == suffix
    assert len(store.get(reference.key)) < 2_000
    monkeypatch.delenv("XCOM_BACKEND_COMPRESSION")  # the reader needs no setting
    assert pull(cls, stored) == value


@pytest.mark.parametrize("path", PANDAS_BACKENDS)
def test_csv_option_is_the_tutorials_lossy_format(path, monkeypatch):
    cls = load(path)
    monkeypatch.setenv("XCOM_BACKEND_PANDAS_FORMAT", "csv")
    monkeypatch.setenv("XCOM_BACKEND_COMPRESSION", "gzip")
    frame = pd.DataFrame(
        {"pokemon": ["pikachu", "vulpix"], "xp": [112, 60], "n": pd.array([1, None], dtype="Int64")}
    )
    stored = push(cls, frame)
    assert Reference.parse(stored).extension == ".csv.gz"
    back = pull(cls, stored)
    pd.testing.assert_frame_equal(back[["pokemon", "xp"]], frame[["pokemon", "xp"]], check_dtype=False)
    # The documented loss: the nullable integer column comes back as float.
    assert back["n"].dtype == "float64"


def test_every_backend_class_is_an_airflow_xcom_backend():
    from airflow.sdk.bases.xcom import BaseXCom

    for path in BACKENDS:
        cls = load(path)
        assert issubclass(cls, BaseXCom)
        assert re.fullmatch(r"[A-Za-z0-9]+", cls.__name__)
