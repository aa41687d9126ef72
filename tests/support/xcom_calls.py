"""Calling a backend the way Airflow 3.3 does, for tests: push, the metadata DB's round trip, pull.

What a worker does with the value `serialize_value` returns, and how it comes back to the reader:

    task: SetXCom in a msgpack frame -> supervisor: Execution API client, JSON over HTTP
        -> API server: set_xcom -> XComModel row (JSON on SQLite, JSONB on PostgreSQL)
    task: GetXCom -> supervisor -> get_xcom -> XComResponse, JSON over HTTP
        -> XComResult in a msgpack frame -> task: deserialize_value

Each step is Airflow's own code: the frame classes and decoders of the task/supervisor channel, the
client `airflow dags test` uses, and the Execution API app in-process (InProcessExecutionAPI, as in
`dags test`), writing to the session's real metadata database (tests/conftest.py: SQLite, or
PostgreSQL with XCOM_TEST_DB=postgres). Only the HTTP socket is left out.

The rows belong to one task instance created for this purpose (the xcom table's foreign keys want
one); every push gets a key of its own, so concurrent pushes do not replace each other's rows.
"""

from __future__ import annotations

import datetime
import os
import threading
import uuid
from collections import namedtuple
from dataclasses import dataclass
from typing import Any
from unittest import mock

from include.xcom_backend import ObjectStoreXComBackend
from include.xcom_backend.codecs import FRAME_CODECS
from include.xcom_backend.reference import Reference
from include.xcom_backend.registry import open_store
from include.xcom_backend.settings import OPTIONS
from include.xcom_backend.stores.base import ObjectStore

# What Airflow hands to deserialize_value: an object with `.value`.
Row = namedtuple("Row", "value")

# The extension a pandas backend gives a DataFrame under the default settings.
FRAME_EXTENSION = FRAME_CODECS[OPTIONS["pandas_format"].default].extension
DAG_ID = "xcom_calls"
RUN_ID = "xcom_calls_run"
TASK_ID = "producer"


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


@dataclass
class _Channel:
    client: Any
    lock: threading.Lock


_channel: _Channel | None = None


def bind_database() -> None:
    """Create the task instance the rows hang off and the Execution API client; called once per
    session by the `xcom_table` fixture, after the metadata DB is migrated."""
    global _channel
    if _channel is not None:
        return
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    _create_task_instance()
    # The client `airflow dags test` uses: Airflow's Execution API app behind an in-process transport.
    client = InProcessTestSupervisor._api_client()
    # One row at a time: these tests are about the stores, and SQLite takes one writer anyway.
    _channel = _Channel(client=client, lock=threading.Lock())


def _create_task_instance() -> None:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    with create_session() as session:
        exists = session.scalar(select(DagRun.id).where(DagRun.dag_id == DAG_ID, DagRun.run_id == RUN_ID))
        if exists is not None:
            return
        now = datetime.datetime.now(datetime.UTC)
        session.execute(
            insert(DagRun.__table__).values(
                dag_id=DAG_ID, run_id=RUN_ID, run_type="manual", run_after=now, state="running"
            )
        )
        session.execute(
            insert(TaskInstance.__table__).values(
                id=uuid.uuid4(),
                dag_id=DAG_ID,
                run_id=RUN_ID,
                task_id=TASK_ID,
                map_index=-1,
                try_number=1,
                pool="default_pool",
                pool_slots=1,
                state="running",
            )
        )


def _through_task_channel(message: Any, *, to_supervisor: bool) -> Any:
    """``message`` encoded into a length-prefixed msgpack frame and decoded on the other side."""
    import msgspec
    from airflow.sdk.execution_time.comms import (
        ToSupervisor,
        ToTask,
        _RequestFrame,
        _ResponseFrame,
    )
    from pydantic import TypeAdapter

    if to_supervisor:
        data = _RequestFrame(id=1, body=message.model_dump()).as_bytes()
        frame = msgspec.msgpack.Decoder(_RequestFrame).decode(data[4:])
        return TypeAdapter(ToSupervisor).validate_python(frame.body)
    body, dump_options = message
    data = _ResponseFrame(id=1, body=body.model_dump(**dump_options)).as_bytes()
    frame = msgspec.msgpack.Decoder(_ResponseFrame).decode(data[4:])
    return TypeAdapter(ToTask).validate_python(frame.body)


def through_database(stored: Any) -> Any:
    """What a reader gets back for ``stored`` (a `serialize_value` result) written to the metadata DB
    by a task on a worker. Raises what the worker would see: e.g. ServerResponseError for a value
    the database rejects, OverflowError for an integer msgpack cannot carry."""
    if _channel is None:
        raise RuntimeError(
            "tests.support.xcom_calls needs the metadata DB: "
            "request the `xcom_table` fixture (tests/conftest.py)"
        )
    from airflow.sdk.execution_time.comms import GetXCom, SetXCom
    from airflow.sdk.execution_time.request_handlers import handle_get_xcom, handle_set_xcom

    key = f"k-{uuid.uuid4().hex}"
    ids = {"key": key, "dag_id": DAG_ID, "run_id": RUN_ID, "task_id": TASK_ID, "map_index": -1}
    with _channel.lock:
        set_message = _through_task_channel(SetXCom(value=stored, **ids), to_supervisor=True)
        handle_set_xcom(_channel.client, set_message)
        get_message = _through_task_channel(GetXCom(**ids), to_supervisor=True)
        result = _through_task_channel(handle_get_xcom(_channel.client, get_message), to_supervisor=False)
    return result.value


def push(cls: type[ObjectStoreXComBackend], value: Any, **ids: Any) -> Any:
    """serialize_value with default ids, returning what the metadata DB gives back."""
    defaults = {"key": "return_value", "task_id": "producer", "dag_id": "tests", "run_id": "run_1"}
    ids = defaults | {"map_index": -1} | ids
    return through_database(cls.serialize_value(value, **ids))


def pull(cls: type[ObjectStoreXComBackend], stored: Any) -> Any:
    return cls.deserialize_value(Row(stored))


def store_of(stored: str) -> tuple[ObjectStore, Reference]:
    """The store and reference behind a stored reference string."""
    reference = Reference.parse(stored)
    assert reference is not None, f"not a reference: {stored!r}"
    return open_store(reference.scheme, reference.bucket), reference
