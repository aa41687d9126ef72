"""Running it: every method on every store and size, small values, then ratios and targets."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import sys
import time
from types import SimpleNamespace
from typing import Any
from unittest import mock

from tools.bench.config import (
    BACKEND_SETTINGS,
    COMMONIO_OWN_VENV,
    FRAME_FORMAT,
    METHODS,
    PANDAS_FORMAT,
    SMALL_THRESHOLD,
    STORE_SPECS,
    TARGET_CSV_SPEEDUP,
    TARGET_MEMORY,
    TARGET_ROWS,
    TARGET_SMALL,
    THRESHOLD_SETTING,
    BenchConfig,
)
from tools.bench.data import make_frame, small_dict
from tools.bench.machine import machine_info
from tools.bench.memory import memory_figures
from tools.bench.memory_pass import run_jobs
from tools.bench.methods import (
    BackendMethod,
    CodecMethod,
    CommonIOMethod,
    FloorMethod,
    HandwrittenMethod,
    Method,
    Unavailable,
    check_commonio,
    check_value,
    describe_error,
    freeze_heap,
    import_path,
    quiet_logs,
    time_once,
    xcom_ids,
)
from tools.bench.profiling import profile_misses
from tools.bench.report import find_entry
from tools.bench.scale import run_scale, scale_targets
from tools.bench.shaped import run_shaped
from tools.bench.stats import rotated, summary
from tools.console import progress as _progress
from tools.servers import LocalServers, unique_bucket_name


def _timing_entry(store: str, method: str, rows: int, runs: list[tuple[float, float]]) -> dict[str, Any]:
    push = [p for p, _ in runs]
    pull = [q for _, q in runs]
    total = [p + q for p, q in runs]
    stats = {"total": summary(total), "push": summary(push), "pull": summary(pull)}
    return {
        "store": store,
        "method": method,
        "rows": rows,
        "runs_s": total,
        "push_runs_s": push,
        "pull_runs_s": pull,
        "median_s": stats["total"]["median"],
        "push_median_s": stats["push"]["median"],
        "pull_median_s": stats["pull"]["median"],
        "iqr_s": stats["total"]["iqr"],
        "stddev_s": stats["total"]["stddev"],
        "stats_s": stats,
    }


def bench_frames(config: BenchConfig, buckets: dict[str, str], run_memory: bool = True) -> dict[str, Any]:
    """Time every method on every store and size; measure memory (or leave its jobs to the caller,
    in ``memory_jobs``); return the raw results."""
    from include.xcom_backend.codecs import FRAME_CODECS
    from include.xcom_backend.frames import ParquetCodec

    timings: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    memory_jobs: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    unavailable: dict[tuple[str, str], str] = {}
    notes: list[str] = []
    specs = [STORE_SPECS[name] for name in config.stores]
    backends = {spec.name: import_path(spec.backend) for spec in specs}

    own_venv: list[str] = []  # stores whose common.io runs in a child in its own venv (commonio_s3)
    for spec in specs if "commonio" in config.methods else ():
        package = COMMONIO_OWN_VENV.get(spec.commonio or "")
        if package and importlib.util.find_spec(package) is None:
            own_venv.append(spec.name)
            continue
        try:
            check_commonio(spec)
        except Unavailable as exc:
            unavailable[(spec.name, "commonio")] = str(exc)
            _progress(f"[{spec.name}] common.io backend cannot run: {exc}")

    for rows in config.rows:
        _progress(f"--- {rows:,} rows: building the frame")
        frame = make_frame(rows)
        parquet = ParquetCodec().encode(frame).data
        frame_bytes = int(frame.memory_usage(deep=True).sum())
        frames.append(
            {
                "rows": rows,
                "memory_bytes": frame_bytes,
                "parquet_bytes": len(parquet),
                "stored_bytes": len(FRAME_CODECS[FRAME_FORMAT].encode(frame).data),
                "dtypes": {str(k): str(v) for k, v in frame.dtypes.items()},
            }
        )

        codec = CodecMethod()
        time_once(codec, frame)
        freeze_heap()
        codec_runs = [time_once(codec, frame)[:2] for _ in range(config.repeat)]
        timings.append(_timing_entry("-", "codec", rows, codec_runs))

        for spec in specs:
            bucket = buckets[spec.name]
            methods: dict[str, Method] = {
                "pandas": BackendMethod(backends[spec.name], {PANDAS_FORMAT: FRAME_FORMAT}),
                "parquet": BackendMethod(backends[spec.name], {PANDAS_FORMAT: "parquet"}),
                "floor": FloorMethod(spec, bucket, parquet),
                "csv": BackendMethod(backends[spec.name], {PANDAS_FORMAT: "csv"}),
                "handwritten": HandwrittenMethod(spec, bucket),
            }
            if (spec.name, "commonio") not in unavailable and spec.name not in own_venv:
                methods["commonio"] = CommonIOMethod(spec, bucket)
            methods = {name: method for name, method in methods.items() if name in config.methods}

            # Warm-up (connections, first write to a bucket) doubles as the check that each method
            # really brings the frame back. CSV, which takes half a minute at a million rows, is
            # warmed up on the first size only and checked on its first timed run after that.
            for name in list(methods):
                if name == "csv" and rows != config.rows[0]:
                    continue
                try:
                    _, _, value = time_once(methods[name], frame)
                except Exception as exc:
                    if name != "commonio":
                        raise
                    reason = describe_error(exc)
                    unavailable[(spec.name, name)] = reason
                    _progress(f"[{spec.name}] common.io backend failed: {reason}")
                    del methods[name]
                    continue
                problem = check_value(name, frame, value, parquet)
                del value
                if problem and name in ("pandas", "floor"):
                    raise AssertionError(f"{spec.name} {name} did not round-trip the frame: {problem}")
                if problem:
                    notes.append(f"{spec.name} {name} at {rows:,} rows: {problem}")

            freeze_heap()
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
            for repeat in range(config.repeat):
                for name in rotated(list(methods), repeat):
                    push, pull, value = time_once(methods[name], frame)
                    if name == "csv" and repeat == 0 and rows != config.rows[0]:
                        problem = check_value(name, frame, value, parquet)
                        if problem:
                            notes.append(f"{spec.name} {name} at {rows:,} rows: {problem}")
                    del value
                    runs[name].append((push, pull))
            for name, method_runs in runs.items():
                timings.append(_timing_entry(spec.name, name, rows, method_runs))
            medians = {name: summary(p + q for p, q in r)["median"] for name, r in runs.items()}
            line = ", ".join(f"{name} {median:.3f}s" for name, median in medians.items())
            _progress(f"[{spec.name}] {rows:,} rows: {line}")
            # Not CSV: it has no memory target, and its per-row Python work runs for minutes
            # under tracemalloc. Nor Parquet: the memory target is the default format's.
            memory_jobs += [
                {"kind": "roundtrip", "store": spec.name, "method": name, "rows": rows, "bucket": bucket}
                for name in methods
                if name not in ("csv", "parquet")
            ]
        del frame, parquet
        gc.collect()

    venv_python: str | None = None
    if own_venv:
        venv = commonio_in_own_venv(config, own_venv, buckets)
        timings += venv["timings"]
        unavailable.update(venv["unavailable"])
        notes += venv["notes"]
        memory_jobs += venv["memory_jobs"]
        venv_python = venv["python"]

    deferred: list[dict[str, Any]] = []
    if config.memory and memory_jobs:
        if run_memory:
            memory = frame_memory(memory_jobs, _memory_peaks(memory_jobs, venv_python), frames)
        else:
            # The caller runs this Python's jobs with its own, in one child; the venv's run here.
            deferred = [job for job in memory_jobs if not job.get("own_venv")]
            own = [job for job in memory_jobs if job.get("own_venv")]
            memory = frame_memory(own, _memory_peaks(own, venv_python), frames)
    return {
        "frames": frames,
        "timings": timings,
        "memory": memory,
        "unavailable": [{"store": s, "method": m, "reason": r} for (s, m), r in unavailable.items()],
        "notes": notes,
        # Left for the caller to measure with its own jobs, in the same process, when not run here.
        "memory_jobs": deferred,
    }


def commonio_in_own_venv(config: BenchConfig, stores: list[str], buckets: dict[str, str]) -> dict[str, Any]:
    """common.io's round trips on `stores` in its own venv's child: timings, what could not be
    measured and why, notes, and memory jobs for that venv's Python."""
    # Imported here: the child runs as `-m tools.bench.commonio_s3`, which must not be imported before.
    from tools.bench.commonio_s3 import OwnVenvUnavailable, describe_venv, run_round_trips

    done: dict[str, Any] = {"timings": [], "unavailable": {}, "notes": [], "memory_jobs": [], "python": None}
    jobs = [{"store": s, "bucket": buckets[s], "rows": rows} for rows in config.rows for s in stores]
    _progress(f"[{', '.join(stores)}] common.io in its own venv: {len(jobs)} round trips in a child")
    try:
        info, answers = run_round_trips(jobs, config.repeat)
    except OwnVenvUnavailable as exc:
        _progress(f"[{', '.join(stores)}] common.io backend {exc}")
        done["unavailable"] = {(store, "commonio"): str(exc) for store in stores}
        return done
    done["python"] = info["python"]
    done["notes"].append(describe_venv(info, stores))
    for job, answer in zip(jobs, answers, strict=True):
        store, rows = job["store"], job["rows"]
        if (store, "commonio") in done["unavailable"]:
            continue  # as in process: a store whose warm-up failed once is not measured further
        if "error" in answer:
            done["unavailable"][(store, "commonio")] = answer["error"]
            _progress(f"[{store}] common.io backend failed: {answer['error']}")
            continue
        if answer["problem"]:
            done["notes"].append(f"{store} commonio at {rows:,} rows: {answer['problem']}")
        done["timings"].append(_timing_entry(store, "commonio", rows, [tuple(r) for r in answer["runs"]]))
        memory_job = {"kind": "roundtrip", "store": store, "method": "commonio", "rows": rows}
        done["memory_jobs"].append({**memory_job, "bucket": job["bucket"], "own_venv": True})
    return done


def _memory_peaks(jobs: list[dict[str, Any]], venv_python: str | None) -> list[dict[str, Any]]:
    """The memory pass's answers, in the order of `jobs`: those marked own_venv run in that venv."""
    answers: dict[int, dict[str, Any]] = {}
    for own in (False, True):
        group = [job for job in jobs if bool(job.get("own_venv")) == own]
        python = venv_python if own else sys.executable
        if group:
            assert python is not None, "memory jobs for a venv that was not built"
            answers.update(zip(map(id, group), run_jobs(group, "round trips", python=python), strict=True))
    return [answers[id(job)] for job in jobs]


def frame_memory(
    jobs: list[dict[str, Any]], results: list[dict[str, Any]], frames: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The memory entries of frame round trips, from the memory pass's peaks."""
    frame_bytes_of = {f["rows"]: f["memory_bytes"] for f in frames}
    memory = []
    for job, peaks in zip(jobs, results, strict=True):
        frame_bytes = frame_bytes_of[job["rows"]]
        memory.append(
            {
                "store": job["store"],
                "method": job["method"],
                "rows": job["rows"],
                "frame_bytes": frame_bytes,
                **memory_figures(peaks, frame_bytes),
            }
        )
    return memory


def bench_small_values(config: BenchConfig) -> list[dict[str, Any]]:
    """Small values with the threshold on (kept in the DB) against Airflow's default database XCom.

    Both sides are timed in-process: serialize_value then deserialize_value of what it returned, which
    is what a push and a pull cost the task. The database round trip, the same for both, is left out.
    """
    from airflow.sdk.bases.xcom import BaseXCom

    from include.xcom_backend.reference import Reference

    backend = import_path(next(iter(STORE_SPECS.values())).backend)
    values: dict[str, Any] = {"int": 42, "dict_1kB": small_dict()}
    ids = xcom_ids()
    loops = config.small_loops
    blocks = max(config.repeat, 5)
    results = []
    with mock.patch.dict(os.environ, {THRESHOLD_SETTING: str(SMALL_THRESHOLD)}):
        for name, value in values.items():
            stored = backend.serialize_value(value, **ids)
            if Reference.parse(stored) is not None:
                raise AssertionError(f"{name} went to the store despite the threshold")
            if backend.deserialize_value(SimpleNamespace(value=stored)) != value:
                raise AssertionError(f"{name} did not come back equal")

            def ours(v: Any = value) -> None:
                backend.deserialize_value(SimpleNamespace(value=backend.serialize_value(v, **ids)))

            def base(v: Any = value) -> None:
                BaseXCom.deserialize_value(SimpleNamespace(value=BaseXCom.serialize_value(v)))

            per_call: dict[str, list[float]] = {"backend": [], "database": []}
            for _ in range(loops // 10):  # warm-up
                ours()
                base()
            freeze_heap()
            for block in range(blocks):
                for side in rotated(["backend", "database"], block):
                    fn = ours if side == "backend" else base
                    gc.collect()
                    began = time.perf_counter()
                    for _ in range(loops):
                        fn()
                    per_call[side].append((time.perf_counter() - began) / loops)
            backend_stats = summary(t * 1e6 for t in per_call["backend"])
            database_stats = summary(t * 1e6 for t in per_call["database"])
            backend_us, database_us = backend_stats["median"], database_stats["median"]
            results.append(
                {
                    "value": name,
                    "json_bytes": len(json.dumps(BaseXCom.serialize_value(value), separators=(",", ":"))),
                    "loops": loops,
                    "blocks": blocks,
                    "backend_runs_us": [t * 1e6 for t in per_call["backend"]],
                    "database_runs_us": [t * 1e6 for t in per_call["database"]],
                    "backend_median_us": backend_us,
                    "database_median_us": database_us,
                    "backend_stats_us": backend_stats,
                    "database_stats_us": database_stats,
                    "ratio": backend_us / database_us,
                }
            )
            _progress(f"[small] {name}: backend {backend_us:.1f} µs, database XCom {database_us:.1f} µs")
    return results


def _median_of(timings: list[dict[str, Any]], store: str, method: str, rows: int) -> float | None:
    entry = find_entry(timings, store, method, rows)
    return None if entry is None else float(entry["median_s"])


def compute_ratios(frames: dict[str, Any], stores: tuple[str, ...]) -> list[dict[str, Any]]:
    """Ratios of medians measured in this same run, per store and size."""
    ratios = []
    for frame in frames["frames"]:
        rows = frame["rows"]
        for store in stores:
            medians = {method: _median_of(frames["timings"], store, method, rows) for method in METHODS}
            pandas, floor = medians["pandas"], medians["floor"]
            ratio: dict[str, Any] = {"store": store, "rows": rows}
            ratio["pandas_vs_floor"] = pandas / floor if pandas and floor else None
            for peer in ("parquet", "csv", "commonio", "handwritten"):
                median = medians[peer]
                ratio[f"{peer}_vs_pandas"] = median / pandas if median and pandas else None
            ratios.append(ratio)
    return ratios


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, PASS or MISS, at 1,000,000 rows (or the largest size measured)."""
    sizes = [f["rows"] for f in result["frames"]]
    at = TARGET_ROWS if TARGET_ROWS in sizes else max(sizes)
    targets = []

    def add(name: str, store: str, value: float | None, limit: float, at_least: bool = False) -> None:
        if value is None:
            status = "n/a"
        else:
            status = "PASS" if (value >= limit if at_least else value <= limit) else "MISS"
        targets.append(
            {
                "target": name,
                "store": store,
                "rows": at if store != "-" else None,
                "value": value,
                "limit": limit,
                "direction": ">=" if at_least else "<=",
                "status": status,
            }
        )

    for ratio in result["ratios"]:
        if ratio["rows"] != at:
            continue
        store = ratio["store"]
        add("pandas round trip / floor", store, ratio["pandas_vs_floor"], STORE_SPECS[store].floor_limit)
        add("CSV round trip / pandas round trip", store, ratio["csv_vs_pandas"], TARGET_CSV_SPEEDUP, True)
    for entry in result["memory"]:
        if entry["rows"] == at and entry["method"] == "pandas":
            add("peak extra memory / frame size", entry["store"], entry["ratio"], TARGET_MEMORY)
    for entry in result["small_values"]:
        name = f"small value ({entry['value']}), threshold on / database XCom"
        add(name, "-", entry["ratio"], TARGET_SMALL)
    return targets


# --------------------------------------------------------------------------------------------------
# Where the time goes, for targets missed
# --------------------------------------------------------------------------------------------------


def run(config: BenchConfig, servers: LocalServers) -> dict[str, Any]:
    """The whole benchmark against running local servers; returns what bench.json holds."""
    began = time.monotonic()
    result: dict[str, Any] = {"machine": machine_info(), "config": {**config.__dict__}}
    result["config"]["rows"] = list(config.rows)
    result["config"]["stores"] = list(config.stores)
    buckets = {name: unique_bucket_name("bench") for name in config.stores}
    env = dict.fromkeys(BACKEND_SETTINGS, "")
    env.update({STORE_SPECS[name].bucket_env: bucket for name, bucket in buckets.items()})
    # gcsfs enables its gRPC-based experimental features when first imported unless told not to;
    # they time out against fake-gcs-server.
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    created: list[tuple[str, str]] = []
    with mock.patch.dict(os.environ, env), quiet_logs():
        try:
            for scheme, bucket in buckets.items():
                servers.create_bucket(scheme, bucket)
                created.append((scheme, bucket))
            if config.scale_only:
                result.update(frames=[], timings=[], memory=[], unavailable=[], notes=[], small_values=[])
            else:
                # With the scale series, one memory pass measures both: a child costs a minute to start.
                result.update(bench_frames(config, buckets, run_memory=not config.scale))
            pending = result.pop("memory_jobs", [])
            if config.scale:
                _progress("the scale series")
                result["scale"] = run_scale(config, buckets, result, pending)
            if not config.scale_only:
                _progress("small values")
                result["small_values"] = bench_small_values(config)
            result["ratios"] = compute_ratios(result, config.stores)
            result["targets"] = [{**t, "link": "loopback"} for t in evaluate_targets(result)]
            if config.scale:
                result["targets"] += scale_targets(result)
            if "shaped" in config.links:
                _progress("the round trips again, over the shaped link")
                result["shaped"] = shaped = run_shaped(config, servers, buckets)
                if "link_unavailable" not in shaped:
                    shaped["ratios"] = compute_ratios(shaped, config.stores)
                    link_bound = evaluate_targets({**shaped, "memory": [], "small_values": []})
                    result["targets"] += [
                        {**t, "link": "shaped"} for t in link_bound if t["target"].endswith("/ floor")
                    ]
            result["profiles"] = profile_misses(result, config, buckets) if config.profile else []
        finally:
            gc.unfreeze()
            for scheme, bucket in created:
                with contextlib.suppress(Exception):
                    servers.delete_bucket_recursive(scheme, bucket)
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["seconds"] = time.monotonic() - began
    return result
