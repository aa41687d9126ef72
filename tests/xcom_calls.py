"""Calling a backend the way Airflow does, for tests: push, the metadata DB's JSON round trip, pull."""

from __future__ import annotations

import importlib
import json
from collections import namedtuple
from typing import Any

from include.xcom_backend import ObjectStoreXComBackend
from include.xcom_backend.reference import Reference
from include.xcom_backend.stores import STORES
from include.xcom_backend.stores.base import ObjectStore

# What Airflow hands to deserialize_value: an object with `.value`.
Row = namedtuple("Row", "value")


def load(path: str) -> type[ObjectStoreXComBackend]:
    """The backend class behind a dotted AIRFLOW__CORE__XCOM_BACKEND path."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


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
    return STORES[reference.scheme](reference.bucket), reference
