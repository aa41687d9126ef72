"""The scale series: frames from 10,000 to 10,000,000 rows and one 1 GiB bytes value, on loopback.

The main pass already times every method at its own sizes; this pass adds, with the pandas backend and
the floor only, the series' frame sizes it lacks (through the main pass's own loop, so the same checks
and the same memory child) and the bytes value, which the pandas backends store as it is (BytesCodec),
threshold off. Then it judges whether time grows linearly with size (`judge_linearity`, the bound in
config.py) and whether memory stays within TARGET_MEMORY at every size.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
from collections.abc import Sequence
from typing import Any
from unittest import mock

from tools.bench.config import (
    FRAME_FORMAT,
    LINEAR_FIT_FROM_ROWS,
    PANDAS_FORMAT,
    READ_TIMEOUT_SETTING,
    SCALE_METHODS,
    SCALE_READ_TIMEOUT_S,
    STORE_SPECS,
    TARGET_LINEAR_SLOPE,
    TARGET_MEMORY,
    THRESHOLD_SETTING,
    BenchConfig,
    StoreSpec,
)
from tools.bench.data import make_bytes
from tools.bench.memory import memory_figures
from tools.bench.memory_pass import run_jobs
from tools.bench.methods import BackendMethod, FloorMethod, Method, freeze_heap, import_path, time_once
from tools.bench.stats import rotated, summary
from tools.console import progress as _progress

# The bytes value goes to the store whatever its size (threshold 0), with the longer read timeout.
BYTES_ENV = {
    PANDAS_FORMAT: FRAME_FORMAT,
    THRESHOLD_SETTING: "0",
    READ_TIMEOUT_SETTING: str(SCALE_READ_TIMEOUT_S),
}


def loglog_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) on log(x): 1 where y grows in proportion to x."""
    if len(points) < 2:
        raise ValueError(f"a slope needs at least two points, got {len(points)}")
    if any(x <= 0 or y <= 0 for x, y in points):
        raise ValueError(f"log-log fit of non-positive values: {list(points)}")
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var_x = sum((x - mean_x) ** 2 for x in xs)
    if var_x == 0:
        raise ValueError(f"a slope needs at least two different sizes, got {sorted({x for x, _ in points})}")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var_x


def fitted_sizes(sizes: Sequence[int], fit_from: int = LINEAR_FIT_FROM_ROWS) -> list[int]:
    """The sizes the linearity fit uses: those from `fit_from` up, or all of them if fewer than two."""
    large = sorted(s for s in set(sizes) if s >= fit_from)
    return large if len(large) >= 2 else sorted(set(sizes))


def judge_linearity(
    times: dict[int, float],
    bounds: tuple[float, float] = TARGET_LINEAR_SLOPE,
    fit_from: int = LINEAR_FIT_FROM_ROWS,
) -> dict[str, Any]:
    """PASS when the log-log slope of time on rows, over `fitted_sizes`, lies within `bounds`."""
    sizes = fitted_sizes(list(times), fit_from)
    slope = loglog_slope([(size, times[size]) for size in sizes])
    low, high = bounds
    return {"sizes": sizes, "slope": slope, "status": "PASS" if low <= slope <= high else "MISS"}


class _BytesFloor(FloorMethod):
    """The floor for the bytes value: its bytes put and got with the adapter's bare SDK call, with the
    bytes value's read timeout (the adapter reads its timeouts when it is built)."""

    def __init__(self, spec: StoreSpec, bucket: str, payload: bytes) -> None:
        with mock.patch.dict(os.environ, BYTES_ENV):
            super().__init__(spec, bucket, payload)


def bytes_method(name: str, spec: StoreSpec, bucket: str, payload: bytes) -> Method:
    """The pandas backend class or the floor, set up for the bytes value."""
    if name == "pandas":
        return BackendMethod(import_path(spec.backend), BYTES_ENV)
    if name == "floor":
        return _BytesFloor(spec, bucket, payload)
    raise ValueError(f"no bytes method {name!r}; the scale series runs {SCALE_METHODS}")


def check_bytes(store: str, method: str, payload: bytes, value: Any) -> None:
    """Raise unless `value` is `payload` again, byte for byte (length first: cheaper, and clearer)."""
    if not isinstance(value, bytes):
        raise AssertionError(f"{store} {method} brought the bytes back as {type(value).__name__}")
    if len(value) != len(payload):
        raise AssertionError(f"{store} {method} brought back {len(value):,} bytes of {len(payload):,}")
    if value != payload:
        raise AssertionError(f"{store} {method} brought back {len(value):,} bytes that differ")


def bench_bytes(config: BenchConfig, buckets: dict[str, str]) -> dict[str, Any]:
    """Time the bytes value's round trip on every store (every run checked, untimed); its memory."""
    size = config.scale_bytes
    _progress(f"--- scale: a {size / 2**20:,.0f} MiB bytes value: building it")
    payload = make_bytes(size)
    timings: list[dict[str, Any]] = []
    freeze_heap()
    for store in config.stores:
        spec = STORE_SPECS[store]
        methods = {name: bytes_method(name, spec, buckets[store], payload) for name in SCALE_METHODS}
        # The warm-up (connections, first write) uses a small value: a full-size one would add a round
        # trip of a minute per method, and every timed run below is checked anyway.
        for method in methods.values():
            time_once(method, payload[:1024])
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        for repeat in range(config.repeat):
            for name in rotated(list(methods), repeat):
                push, pull, value = time_once(methods[name], payload)
                check_bytes(store, name, payload, value)
                runs[name].append((push, pull))
                del value
                gc.collect()
        for name, method_runs in runs.items():
            timings.append(_bytes_entry(store, name, size, method_runs))
        line = ", ".join(f"{e['method']} {e['median_s']:.2f}s" for e in timings if e["store"] == store)
        _progress(f"[{store}] {size:,} bytes: {line}")
    del payload
    gc.collect()
    return {"value_bytes": size, "timings": timings, "memory": []}


def bytes_jobs(config: BenchConfig, buckets: dict[str, str]) -> list[dict[str, Any]]:
    """The memory pass's jobs for the bytes value: the pandas backend on every store."""
    size = config.scale_bytes
    return [
        {"kind": "bytes", "store": store, "method": "pandas", "size": size, "bucket": buckets[store]}
        for store in config.stores
    ]


def bytes_memory(jobs: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory entries of the bytes value, from the memory pass's peaks."""
    memory = []
    for job, peaks in zip(jobs, results, strict=True):
        memory.append(
            {
                "store": job["store"],
                "method": job["method"],
                "value_bytes": job["size"],
                **memory_figures(peaks, job["size"]),
            }
        )
    return memory


def _bytes_entry(store: str, method: str, size: int, runs: list[tuple[float, float]]) -> dict[str, Any]:
    total = [p + q for p, q in runs]
    stats = {
        "total": summary(total),
        "push": summary(p for p, _ in runs),
        "pull": summary(q for _, q in runs),
    }
    return {
        "store": store,
        "method": method,
        "value_bytes": size,
        "runs_s": total,
        "median_s": stats["total"]["median"],
        "push_median_s": stats["push"]["median"],
        "pull_median_s": stats["pull"]["median"],
        "stats_s": stats,
    }


def run_scale(
    config: BenchConfig, buckets: dict[str, str], result: dict[str, Any], pending: list[dict[str, Any]]
) -> dict[str, Any]:
    """The series' frame sizes the main pass did not time (added to `result`), then the bytes value;
    then one memory pass for the main pass's `pending` jobs, the added sizes and the bytes value."""
    from tools.bench.run import bench_frames, frame_memory

    began = time.monotonic()
    timed = {f["rows"] for f in result["frames"]}
    missing = tuple(rows for rows in config.scale_rows if rows not in timed)
    frame_jobs = list(pending)
    if missing:
        extra = bench_frames(
            dataclasses.replace(config, rows=missing, methods=SCALE_METHODS), buckets, run_memory=False
        )
        for key in ("frames", "timings", "memory", "unavailable", "notes"):
            result[key] += extra[key]
        result["frames"].sort(key=lambda f: f["rows"])
        frame_jobs += extra["memory_jobs"]
    scale: dict[str, Any] = {"rows": list(config.scale_rows), "added_rows": list(missing)}
    scale["bytes"] = bench_bytes(config, buckets)
    if config.memory:
        value_jobs = bytes_jobs(config, buckets)
        peaks = run_jobs(frame_jobs + value_jobs, "round trips (frames, then the bytes value)")
        result["memory"] += frame_memory(frame_jobs, peaks[: len(frame_jobs)], result["frames"])
        scale["bytes"]["memory"] = bytes_memory(value_jobs, peaks[len(frame_jobs) :])
    scale["linearity"] = [
        {"store": store, "method": "pandas", **judge_linearity(series_times(result, store, "pandas", config))}
        for store in config.stores
    ]
    scale["seconds"] = time.monotonic() - began
    _progress(f"scale pass took {scale['seconds']:.0f} s")
    return scale


def series_times(result: dict[str, Any], store: str, method: str, config: BenchConfig) -> dict[int, float]:
    """Median round trip per frame size of the series, for one store and method."""
    sizes = set(config.scale_rows)
    return {
        e["rows"]: e["median_s"]
        for e in result["timings"]
        if e["store"] == store and e["method"] == method and e["rows"] in sizes
    }


def scale_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The scale targets per store: linear time, and memory within the bound at every size."""
    scale = result["scale"]
    rows = set(scale["rows"])
    low, high = TARGET_LINEAR_SLOPE
    targets = []
    for line in scale["linearity"]:
        first, last = line["sizes"][0], line["sizes"][-1]
        targets.append(
            {
                "target": f"scale: log-log slope of time on rows, {first:,}..{last:,}",
                "store": line["store"],
                "rows": last,
                "value": line["slope"],
                "limit": [low, high],
                "direction": "within",
                "status": line["status"],
                "link": "loopback",
            }
        )
    for store in result["config"]["stores"]:
        ratios = [
            (m["ratio"], f"{m['rows']:,} rows")
            for m in result["memory"]
            if m["store"] == store and m["method"] == "pandas" and m["rows"] in rows
        ]
        ratios += [
            (m["ratio"], f"{m['value_bytes'] / 2**20:,.0f} MiB bytes")
            for m in scale["bytes"]["memory"]
            if m["store"] == store
        ]
        if not ratios:
            continue
        worst, where = max(ratios)
        targets.append(
            {
                "target": f"scale: largest peak extra memory / value over the series (at {where})",
                "store": store,
                "rows": None,
                "value": worst,
                "limit": TARGET_MEMORY,
                "direction": "<=",
                "status": "PASS" if worst <= TARGET_MEMORY else "MISS",
                "link": "loopback",
            }
        )
    return targets
