"""The numpy, pyarrow, polars and bytes codecs beyond the catalogue's round trips: what their
refusals say, where compression applies, keys every codec's extension makes, and lazy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from include.xcom_backend.codecs import CODECS, COMPRESSIONS, TYPES
from include.xcom_backend.reference import Reference, is_xcom_object, object_key
from tests.support.hostile_values import assert_same
from tests.support.schemes import IN_PROCESS
from tests.support.xcom_calls import backend_for, pull, push, store_of

SCHEME = IN_PROCESS[0]


def test_every_extension_and_compression_makes_a_reference_and_a_cleanable_key():
    for codec in CODECS.values():
        suffixes = [""] + [c.suffix for c in COMPRESSIONS.values()] * codec.compressible
        for suffix in suffixes:
            key = object_key("xcom", dag_id="d", run_id="r", task_id="t", map_index=-1, key="k", extension="")
            key += codec.extension + suffix
            assert is_xcom_object(key, "xcom"), key  # the cleanup DAG would otherwise never see it
            reference = Reference(SCHEME, "bucket", key, "a" * 64)
            assert Reference.parse(str(reference)) == reference, key
            assert reference.extension == codec.extension + suffix


@pytest.mark.usefixtures("xcom_table")
@pytest.mark.parametrize("pandas", [False, True], ids=["json", "pandas"])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        (pl.LazyFrame({"a": [1]}), ".collect()"),
        (np.array([1, "x"], dtype=object), "pickle"),
        (np.array([(1, None)], dtype=[("a", "i4"), ("o", "O")]), "pickle"),
        ([b"x"], "whole value only"),
    ],
    ids=["lazyframe", "object-array", "object-field", "bytes-in-a-list"],
)
def test_refusals_name_task_key_type_and_what_to_do(pandas, value, says):
    if not pandas and isinstance(value, np.ndarray):
        says = "*Pandas backend"  # a JSON backend refuses every array, objects or not
    cls = backend_for(SCHEME, pandas=pandas)
    with pytest.raises(TypeError) as info:
        push(cls, value, task_id="t1", key="k1")
    message = str(info.value)
    assert "t1" in message and "'k1'" in message and type(value).__qualname__ in message
    assert says in message


@pytest.mark.usefixtures("xcom_table")
def test_the_compression_setting_applies_to_arrays_and_tables_but_bytes_stay_as_they_are(monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__COMPRESSION", "zstd")
    cls = backend_for(SCHEME, pandas=True)
    array = np.zeros((300, 300))
    stored = push(cls, array)
    store, reference = store_of(stored)
    assert reference.key.endswith(".npy.zst") and len(store.get(reference.key)) < array.nbytes // 10
    assert_same(array, pull(cls, stored))
    frame = pl.DataFrame({"a": [1] * 10_000})
    stored = push(cls, frame)
    assert store_of(stored)[1].key.endswith(".polars.arrow.zst")
    assert_same(frame, pull(cls, stored))
    data = bytes(1000)
    stored = push(cls, data)
    store, reference = store_of(stored)
    assert reference.key.endswith(".bytes") and store.get(reference.key) == data


def test_the_table_names_each_type_once():
    names = [f"{row.package}.{row.name}" for row in TYPES]
    assert len(names) == len(set(names))


def test_a_user_without_polars_can_use_the_backends_and_nothing_imports_it_unasked():
    # A fresh interpreter: this one has polars imported already.
    script = textwrap.dedent(
        """
        import sys
        import airflow.sdk  # first, as wherever Airflow loads a backend (README: troubleshooting)
        import numpy as np
        from include.xcom_backend.codecs import JSON_CODEC, type_row
        JSON_CODEC.encode({"a": [1, 2.5, None], "b": (1,)})
        npy = type_row(np.arange(3)).codec
        assert npy.decode(npy.encode(np.arange(3)).data).sum() == 3
        assert "polars" not in sys.modules, "polars imported for values that are not polars"
        sys.modules["polars"] = None  # as if not installed
        JSON_CODEC.encode({"a": 1})
        assert type_row(b"x").codec.decode(b"x") == b"x"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
