"""The core's decisions that need no store: settings, formats, references, the retry policy and the
mirror's read order."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import hashlib
import json
import os
import re
import warnings
from typing import Any

import pytest

from include.xcom_backend import XComReferenceError
from include.xcom_backend.catalog import ALL_BACKENDS
from include.xcom_backend.codecs import CODECS, COMPRESSIONS, UnknownFormat, formats_of
from include.xcom_backend.reference import Reference, object_key
from include.xcom_backend.registry import TABLE, open_store, row
from include.xcom_backend.settings import (
    OPTIONS,
    Settings,
    XComSettingDeprecationWarning,
    threshold_bytes,
    value,
)
from tests.support.hostile_values import assert_same
from tests.support.xcom_calls import load, pull

MIRROR = "include.mirror_xcom_backend.S3GCSMirrorXComBackendJSON"


# --- settings ----------------------------------------------------------------------------------------


def test_settings_come_from_the_xcom_backend_section_read_at_call_time(monkeypatch):
    assert Settings.from_env().key_prefix == OPTIONS["key_prefix"].default
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__KEY_PREFIX", "team/xcom/")
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__S3_BUCKET", "from-conf")
    assert Settings.from_env().key_prefix == "team/xcom"
    assert open_store("s3").bucket == "from-conf"


def test_settings_come_from_airflow_cfg_too(monkeypatch):
    """The section as airflow.cfg (or a secrets backend) gives it, through the same conf object."""
    from airflow.sdk.configuration import conf

    import include.xcom_backend.settings as settings_module

    monkeypatch.setattr(settings_module, "_values", {})
    if not conf.has_section("xcom_backend"):
        conf.add_section("xcom_backend")
    conf.set("xcom_backend", "gcs_bucket", "from-airflow-cfg")
    try:
        assert open_store("gcs").bucket == "from-airflow-cfg"
    finally:
        conf.remove_option("xcom_backend", "gcs_bucket")


def test_an_old_name_still_works_with_one_warning_and_the_new_name_wins(monkeypatch):
    import include.xcom_backend.settings as settings_module

    monkeypatch.setattr(settings_module, "_warned", set())
    monkeypatch.setenv("XCOM_BACKEND_AZURE_CONTAINER", "old-name")
    option = row("wasb").bucket_option
    with pytest.warns(XComSettingDeprecationWarning, match="AIRFLOW__XCOM_BACKEND__WASB_CONTAINER"):
        assert value(option) == "old-name"
    monkeypatch.setenv("XCOM_BACKEND_AZURE_CONTAINER", "old-name-2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not once per value
        assert value(option) == "old-name-2"
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__WASB_CONTAINER", "new-name")
    assert value(option) == "new-name"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("AIRFLOW__XCOM_BACKEND__ATTEMPTS", "abc"),
        ("XCOM_BACKEND_READ_ATTEMPTS", "abc"),
        ("AIRFLOW__XCOM_BACKEND__READ_TIMEOUT", "-1"),
        ("AIRFLOW__XCOM_BACKEND__CONNECT_TIMEOUT", "soon"),
        ("AIRFLOW__XCOM_BACKEND__COMPRESSION", "brotli"),
        ("AIRFLOW__XCOM_BACKEND__PANDAS_FORMAT", "orc"),
        ("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", "64k"),
        ("AIRFLOW__XCOM_BACKEND__PREVIEW", "maybe"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_value(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        threshold_bytes()
        Settings.from_env()
    assert repr(raw) in str(info.value)


def test_the_default_policy_ends_a_call_to_a_dead_store_within_60_seconds():
    policy = Settings.from_env().retry_policy
    for scheme, store_row in TABLE.items():
        bound = policy.failure_bound(store_row.adapter_class().fixed_wait)
        assert bound <= 60, (scheme, bound)
    assert open_store("s3").failure_bound == policy.failure_bound(1.0) == 49.5


# --- formats and references ----------------------------------------------------------------------------


def test_every_codec_and_compression_is_found_from_the_object_name():
    for codec in CODECS.values():
        assert formats_of(f"x/{'0' * 32}{codec.extension}") == (codec, None)
        for compression in COMPRESSIONS.values():
            name = f"{'0' * 32}{codec.extension}{compression.suffix}"
            if codec.compressible:
                assert formats_of(name) == (codec, compression)
            else:
                with pytest.raises(UnknownFormat):
                    formats_of(name)


def test_a_reference_with_an_unknown_extension_is_an_error_naming_it():
    key = object_key("xcom", dag_id="d", run_id="r", task_id="t", map_index=-1, key="k", extension=".pickle")
    stored = str(Reference("s3", "some-bucket", key, "a" * 64))
    with pytest.raises(XComReferenceError, match=r"\.pickle") as info:
        pull(load("include.s3_xcom_backend_json.S3XComBackendJSON"), stored)
    assert stored in str(info.value)


def test_every_scheme_of_the_table_is_a_reference_prefix():
    for scheme in TABLE:
        key = object_key("", dag_id="d", run_id="r", task_id="t", map_index=0, key="k", extension=".json")
        reference = Reference(scheme, "a-bucket", key, "0" * 64)
        assert Reference.parse(str(reference)) == reference


# --- the mirror's read order ---------------------------------------------------------------------------


def _reference(scheme: str, bucket: str) -> Reference:
    key = object_key("xcom", dag_id="d", run_id="r", task_id="t", map_index=-1, key="k", extension=".json")
    return Reference(scheme, bucket, key, "0" * 64)


def test_the_mirror_falls_back_to_its_copy_only_for_references_it_wrote():
    mirror = load(MIRROR)
    s3_bucket, gcs_bucket = open_store("s3").bucket, open_store("gcs").bucket
    where = [(s.scheme, s.bucket) for s in mirror._copies(_reference("s3", s3_bucket))]
    assert where == [("s3", s3_bucket), ("gcs", gcs_bucket)]
    # Written by a GCS backend, or by an S3 backend into another bucket: no copy was made anywhere.
    assert [(s.scheme, s.bucket) for s in mirror._copies(_reference("gcs", gcs_bucket))] == [
        ("gcs", gcs_bucket)
    ]
    other = [(s.scheme, s.bucket) for s in mirror._copies(_reference("s3", "another-bucket"))]
    assert other == [("s3", "another-bucket")]


# --- what every public class does without touching its store -------------------------------------------

BACKENDS = list(ALL_BACKENDS)


@pytest.mark.parametrize("path", BACKENDS)
@pytest.mark.parametrize(
    "value",
    [42, "plain", {"a": [1, 2]}, None, "xcom_s3:/almost", dt.datetime(2026, 1, 1)],
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


def test_every_backend_class_is_an_airflow_xcom_backend():
    from airflow.sdk.bases.xcom import BaseXCom

    for path in BACKENDS:
        cls = load(path)
        assert issubclass(cls, BaseXCom)
        assert re.fullmatch(r"[A-Za-z0-9]+", cls.__name__)


# Values whose serialized form the JSON codec builds without Airflow's serializer (plain JSON types)
# and values it must hand to it (tuples, subclasses, classes, envelopes).
_PLAIN = [{"b": [1, 2.5, None, True], "a": {"x": "y"}}, [[], {}], "text", 2**70, -0.0]
_NOT_PLAIN = [
    {"t": (1, 2)},
    [{1, 2}],
    {"d": dt.date(2026, 12, 1)},
    collections.OrderedDict(a=1),
    [enum.IntEnum("E", "ONE").ONE],
]


def _typed(structure: Any) -> Any:
    """A structure with every type spelled out, so that equal-but-differently-typed copies differ."""
    if isinstance(structure, dict):
        return (type(structure), [(type(k), k, _typed(v)) for k, v in structure.items()])
    if isinstance(structure, list | tuple):
        return (type(structure), [_typed(v) for v in structure])
    return (type(structure), repr(structure))


@pytest.mark.parametrize("value", _PLAIN + _NOT_PLAIN, ids=repr)
def test_the_json_codec_builds_what_airflow_s_serializer_builds_and_reads_it_back_alike(value):
    from airflow.sdk.serde import deserialize, serialize

    from include.xcom_backend.codecs import JSON_CODEC

    data, structure = JSON_CODEC.encode(value)
    assert _typed(structure) == _typed(serialize(value))
    assert _typed(JSON_CODEC.decode(data)) == _typed(deserialize(json.loads(data)))
    assert _typed(JSON_CODEC.decode(data.decode())) == _typed(deserialize(json.loads(data)))


@pytest.mark.parametrize(
    "text",
    [
        '{"__classname__":"builtins.tuple","__version__":1,"__data__":[1,2]}',
        '{"\\u005f_classname__":"builtins.tuple","__version__":1,"__data__":[1,2]}',
        '{"__type":"tuple","__var":[1,2]}',
    ],
)
def test_json_text_with_an_envelope_still_comes_back_as_the_class_it_names(text):
    from include.xcom_backend.codecs import JSON_CODEC

    assert JSON_CODEC.decode(text) == (1, 2)
    assert JSON_CODEC.decode(text.encode()) == (1, 2)


@pytest.mark.parametrize(
    "pieces",
    [[7, 3], [10], [10, 10], [3, 35, 1, 2], [41], [9, 2, 30]],
    ids=lambda p: "+".join(map(str, p)),
)
def test_the_part_sink_cuts_whole_parts_whatever_the_encoder_writes(pieces: list[int]) -> None:
    from include.xcom_backend.stores.memory import MemoryStore
    from include.xcom_backend.upload import stream_upload

    sent: list[list[bytes]] = []

    class Recording(MemoryStore):
        part_size = 10

        def _put_parts(self, key: str, parts: Any, content_type: str, metadata: dict[str, str]) -> None:
            sent.append(list(parts))
            super()._put_parts(key, iter(sent[-1]), content_type, metadata)

    data = os.urandom(sum(pieces))
    store = Recording(f"sink-{len(data)}-{len(pieces)}")

    def write(sink: Any) -> None:
        start = 0
        for size in pieces:
            sink.write(memoryview(data)[start : start + size])
            start += size

    uploaded, _ = stream_upload(store, "k", "application/octet-stream", write)
    assert store.get("k") == data
    assert (uploaded.size, uploaded.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    if len(data) <= 10:
        assert sent == []  # one part: one PUT
    else:
        (parts,) = sent
        assert [len(p) for p in parts[:-1]] == [10] * (len(parts) - 1)
        assert 1 <= len(parts[-1]) <= 10
