"""Calling a backend the way Airflow does, for tests: push, the metadata DB's JSON round trip, pull."""

from __future__ import annotations

import json
import os
from collections import namedtuple
from typing import Any
from unittest import mock

from include.xcom_backend import ObjectStoreXComBackend
from include.xcom_backend.reference import Reference
from include.xcom_backend.registry import open_store
from include.xcom_backend.stores.base import ObjectStore

# What Airflow hands to deserialize_value: an object with `.value`.
Row = namedtuple("Row", "value")


def load(path: str) -> type[ObjectStoreXComBackend]:
    """The class a task gets with AIRFLOW__CORE__XCOM_BACKEND=``path``: found by Airflow's own
    resolver (the task runner's), and checked to be one of this project's backends."""
    from airflow.sdk.execution_time.xcom import resolve_xcom_backend

    with mock.patch.dict(os.environ, {"AIRFLOW__CORE__XCOM_BACKEND": path}):
        cls = resolve_xcom_backend()
    assert issubclass(cls, ObjectStoreXComBackend), f"{path} is {cls!r}, not an object-store backend"
    return cls


def backend_for(scheme: str, *, pandas: bool = False) -> type[ObjectStoreXComBackend]:
    """A backend class over one store of the table, for stores that have no public classes."""
    name = f"{scheme.capitalize()}XComBackend{'Pandas' if pandas else 'JSON'}"
    return type(name, (ObjectStoreXComBackend,), {"stores": (scheme,), "pandas": pandas})


def push(cls: type[ObjectStoreXComBackend], value: Any, **ids: Any) -> Any:
    """serialize_value with default ids, returning what the metadata DB would give back."""
    defaults = {"key": "return_value", "task_id": "producer", "dag_id": "tests", "run_id": "run_1"}
    ids = defaults | {"map_index": -1} | ids
    stored = cls.serialize_value(value, **ids)
    return json.loads(json.dumps(stored))


def pull(cls: type[ObjectStoreXComBackend], stored: Any) -> Any:
    return cls.deserialize_value(Row(stored))


def store_of(stored: str) -> tuple[ObjectStore, Reference]:
    """The store and reference behind a stored reference string."""
    reference = Reference.parse(stored)
    assert reference is not None, f"not a reference: {stored!r}"
    return open_store(reference.scheme, reference.bucket), reference
