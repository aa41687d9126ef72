"""Where the time (or memory) goes, for the targets missed: each step timed alone, and cProfile."""

from __future__ import annotations

import cProfile
import gc
import hashlib
import os
import pstats
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast
from unittest import mock

from tools.bench.config import (
    DECODE_STEP,
    ENCODE_STEP,
    FRAME_FORMAT,
    PANDAS_FORMAT,
    PROJECT_ROOT,
    SMALL_THRESHOLD,
    STORE_SPECS,
    THRESHOLD_SETTING,
    BenchConfig,
    StoreSpec,
)
from tools.bench.data import make_frame, small_dict
from tools.bench.memory import measure_call
from tools.bench.memory_pass import run_jobs
from tools.bench.methods import BackendMethod, FloorMethod, delete_object, import_path, xcom_ids
from tools.bench.stats import summary
from tools.console import progress as _progress

if TYPE_CHECKING:
    import pandas as pd


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", str(PROJECT_ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return Path(filename).name if filename.startswith("/") else filename


# pstats.Stats keeps its table in an attribute the type stubs leave out; its typed alternative,
# get_stats_profile(), rounds every time to milliseconds, too coarse for the small-value loops.
# Key: (file, line, function); value: (primitive calls, calls, own seconds, cumulative seconds, callers).
PstatsTable = dict[tuple[str, int, str], tuple[int, int, float, float, dict[Any, Any]]]


def _pstats_table(profiler: cProfile.Profile) -> PstatsTable:
    return cast("PstatsTable", vars(pstats.Stats(profiler))["stats"])


def profile_summary(call: Callable[[], Any], top: int = 12) -> list[dict[str, Any]]:
    """cProfile of one call: the functions with the most time spent in themselves."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        call()
    finally:
        profiler.disable()
    rows: list[dict[str, Any]] = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in _pstats_table(profiler).items():
        where = f"{_short_path(filename)}:{line}({func})" if filename != "~" else func
        rows.append({"function": where, "ncalls": ncalls, "tottime_s": tottime, "cumtime_s": cumtime})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    total = sum(r["tottime_s"] for r in rows)
    return [{**r, "share": r["tottime_s"] / total if total else 0.0} for r in rows[:top]]


def stage_breakdown(spec: StoreSpec, bucket: str, frame: pd.DataFrame, repeat: int) -> list[dict[str, Any]]:
    """Median seconds of each step the pandas backend takes, timed one by one with the same code, and
    of the floor's put and get in the same loop, so the adapter and the bare SDK meet the same load."""
    from include.xcom_backend.codecs import FRAME_CODECS
    from include.xcom_backend.frames import ParquetCodec
    from include.xcom_backend.stores import STORES

    codec = FRAME_CODECS[FRAME_FORMAT]
    store = STORES[spec.name](bucket)
    floor = FloorMethod(spec, bucket, ParquetCodec().encode(frame).data)
    key = f"bench-stages/{uuid.uuid4().hex}{codec.extension}"
    steps: dict[str, list[float]] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        value = call()
        steps.setdefault(name, []).append(time.perf_counter() - began)
        return value

    for _ in range(repeat):
        gc.collect()
        data = timed(ENCODE_STEP, lambda: codec.encode(frame).data)
        timed("sha256 (push)", lambda d=data: hashlib.sha256(d).hexdigest())
        timed("store.put", lambda d=data: store.put(key, d, content_type=codec.content_type, metadata={}))
        del data
        back = timed("store.get", lambda: store.get(key))
        timed("sha256 (pull)", lambda b=back: hashlib.sha256(b).hexdigest())
        value = timed(DECODE_STEP, lambda b=back: codec.decode(b))
        del back, value
        floor_key = timed("floor: SDK put", lambda: floor.push(frame))
        timed("floor: SDK get", lambda k=floor_key: floor.pull(k))
        floor.cleanup(floor_key)
    delete_object(store, key)
    return [{"stage": name, "median_s": summary(values)["median"]} for name, values in steps.items()]


def memory_breakdown(spec: StoreSpec, bucket: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Peak extra bytes of each step of the pandas backend, measured one by one (in the memory pass's
    process: `run_jobs` with a "stages" job)."""
    from include.xcom_backend.codecs import FRAME_CODECS
    from include.xcom_backend.stores import STORES

    codec = FRAME_CODECS[FRAME_FORMAT]
    store = STORES[spec.name](bucket)
    key = f"bench-stages/{uuid.uuid4().hex}{codec.extension}"
    data = codec.encode(frame).data
    steps = {
        ENCODE_STEP: lambda: codec.encode(frame).data,
        "store.put": lambda: store.put(key, data, content_type=codec.content_type, metadata={}),
        "store.get": lambda: store.get(key),
        DECODE_STEP: lambda: codec.decode(data),
    }
    out = [{"stage": name, **measure_call(call)} for name, call in steps.items()]
    delete_object(store, key)
    return out


def profile_misses(
    result: dict[str, Any], config: BenchConfig, buckets: dict[str, str]
) -> list[dict[str, Any]]:
    """Where the time (or memory) goes for each target missed."""
    # A scale target judges a whole series (its slope, its worst size), not one round trip to profile;
    # the profile of the 1,000,000-row round trip shows the same stages.
    misses = [
        t
        for t in result["targets"]
        if t["status"] == "MISS" and t.get("link") != "shaped" and not t["target"].startswith("scale:")
    ]
    profiles: list[dict[str, Any]] = []
    done: set[tuple[str, str]] = set()
    memory_jobs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    frame_cache: dict[int, Any] = {}

    def frame_of(rows: int) -> Any:
        if rows not in frame_cache:
            frame_cache.clear()
            frame_cache[rows] = make_frame(rows)
        return frame_cache[rows]

    for miss in misses:
        store, name = miss["store"], miss["target"]
        kind = "time" if "floor" in name or "CSV" in name else "memory" if "memory" in name else "small"
        seen = (kind, store if kind != "small" else name)
        if seen in done:
            continue
        done.add(seen)
        entry: dict[str, Any] = {"kind": kind, "store": store, "rows": miss["rows"], "target": name}
        _progress(f"[profile] {name} ({store}) missed: profiling")
        if kind in ("time", "memory"):
            spec = STORE_SPECS[store]
            frame = frame_of(miss["rows"])
            backend = import_path(spec.backend)
            method = BackendMethod(backend, {PANDAS_FORMAT: FRAME_FORMAT})
            if kind == "time":
                entry["stages"] = stage_breakdown(spec, buckets[store], frame, config.repeat)
                with method.configured():
                    entry["top"] = profile_summary(lambda m=method, f=frame: m.cleanup(m.pull(m.push(f))))
            else:
                # Measured after the loop, all in one child: each child imports Airflow again.
                memory_jobs.append(
                    (
                        entry,
                        {"kind": "stages", "store": store, "rows": miss["rows"], "bucket": buckets[store]},
                    )
                )
        else:
            from airflow.sdk.bases.xcom import BaseXCom

            backend = import_path(next(iter(STORE_SPECS.values())).backend)
            value = 42 if "(int)" in name else small_dict()
            ids = xcom_ids()

            def loop(v: Any = value, b: Any = backend, i: dict[str, Any] = ids) -> None:
                for _ in range(config.small_loops):
                    b.deserialize_value(SimpleNamespace(value=b.serialize_value(v, **i)))

            def base_loop(v: Any = value) -> None:
                for _ in range(config.small_loops):
                    BaseXCom.deserialize_value(SimpleNamespace(value=BaseXCom.serialize_value(v)))

            with mock.patch.dict(os.environ, {THRESHOLD_SETTING: str(SMALL_THRESHOLD)}):
                entry["top"] = profile_summary(loop)
                entry["top_database"] = profile_summary(base_loop, top=6)
            entry["calls"] = config.small_loops
        profiles.append(entry)
    if memory_jobs:
        _progress(f"[profile] memory of the stages: {len(memory_jobs)} store(s) in one process")
        for (entry, _), measured in zip(memory_jobs, run_jobs([job for _, job in memory_jobs]), strict=True):
            entry["stages_memory"] = measured["stages"]
    return profiles
