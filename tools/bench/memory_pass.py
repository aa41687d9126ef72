"""The memory pass, in a process of its own with tracemalloc on from the interpreter's start, and the
heap pass, the same round trips in a process whose every allocation one counter sees (`tools.bench.heap`).

The parent (`tools.bench.run`) sends a list of jobs as JSON on stdin and reads the results as JSON from
the file named by the child's argument (stdout is the libraries' as much as ours); progress goes to
stderr. The child inherits the parent's environment, so the backends and
SDKs find the same local servers and buckets. Frames are rebuilt here from their seed: `make_frame` is
deterministic, so the child measures the frame the parent timed.

Jobs: ``{"kind": "roundtrip", "store", "method": pandas|floor|commonio|handwritten, "rows", "bucket"}``, the
push and pull peaks of one round trip; ``{"kind": "stages", "store", "rows", "bucket"}`` the peak of
each step of the pandas backend (encode, put, get, decode); ``{"kind": "bytes", "store", "method":
pandas|floor, "size", "bucket"}`` the push and pull peaks of the scale series' bytes value.
`run_jobs` runs the round trips again in the heap pass and adds its exact figure to each stage, as
``heap``; the stages' breakdown is the memory pass's alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench.child import run_child
from tools.bench.config import FRAME_FORMAT, PANDAS_FORMAT, STORE_SPECS
from tools.bench.data import make_frame
from tools.bench.heap import HeapCounter, built_counter, counted_environment, measure_heap
from tools.bench.memory import measure_memory, require_tracing
from tools.bench.methods import (
    BackendMethod,
    CommonIOMethod,
    FloorMethod,
    HandwrittenMethod,
    Method,
    import_path,
    time_once,
)
from tools.console import progress


class MemoryPassError(RuntimeError):
    """The memory or heap pass answered something other than one result per job."""


HEAP_KINDS = ("roundtrip", "bytes")

Measure = Callable[[Method, Any], dict[str, dict[str, int]]]


def run_jobs(
    jobs: list[dict[str, Any]], what: str = "jobs", python: str = sys.executable
) -> list[dict[str, Any]]:
    """Run `jobs` in `python -X tracemalloc=1 -m tools.bench.memory_pass` (by default this process's
    Python; common.io on S3 gives its own venv's), then their round trips in the heap pass; one result
    per job."""
    if not jobs:
        return []
    progress(f"measuring memory: {len(jobs)} {what} in a process of their own")
    command = [python, "-X", "tracemalloc=1", "-m", "tools.bench.memory_pass"]
    results = _answers(run_child("memory pass", command, jobs), jobs)
    counted = [(job, result) for job, result in zip(jobs, results, strict=True) if job["kind"] in HEAP_KINDS]
    if counted:
        progress(f"measuring the heap: {len(counted)} {what} in a process whose allocations are counted")
        with built_counter() as library:
            heap = run_child(
                "heap pass",
                [python, "-m", "tools.bench.memory_pass", "--heap"],
                [job for job, _ in counted],
                env=counted_environment(library),
            )
        for (_, result), exact in zip(counted, _answers(heap, [job for job, _ in counted]), strict=True):
            for stage in ("push", "pull"):
                result[stage]["heap"] = exact[stage]["heap"]
    return results


def _answers(results: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(results) != len(jobs):
        raise MemoryPassError(f"the pass answered {len(results)} results for {len(jobs)} jobs")
    return results


def _method(job: dict[str, Any], frame: Any, parquet: bytes) -> Method:
    spec = STORE_SPECS[job["store"]]
    if job["method"] == "pandas":
        return BackendMethod(import_path(spec.backend), {PANDAS_FORMAT: FRAME_FORMAT})
    if job["method"] == "floor":
        return FloorMethod(spec, job["bucket"], parquet)
    if job["method"] == "commonio":
        return CommonIOMethod(spec, job["bucket"])
    if job["method"] == "handwritten":
        return HandwrittenMethod(spec, job["bucket"])
    raise ValueError(f"unknown method {job['method']!r} in memory job {job}")


def _run_bytes_job(job: dict[str, Any], measure: Measure) -> dict[str, Any]:
    from tools.bench.data import make_bytes
    from tools.bench.scale import bytes_method

    payload = make_bytes(job["size"])
    method = bytes_method(job["method"], STORE_SPECS[job["store"]], job["bucket"], payload)
    # Connections and first writes, outside the peaks; a small value, as where the bytes are timed.
    time_once(method, payload[:1024])
    # Every timed round trip of this value was checked in the parent.
    return measure(method, payload)


def _run_job(job: dict[str, Any], frame: Any, parquet: bytes, measure: Measure) -> dict[str, Any]:
    if job["kind"] == "stages":
        from tools.bench.profiling import memory_breakdown

        spec = STORE_SPECS[job["store"]]
        memory_breakdown(spec, job["bucket"], frame)  # connections and first writes, outside the peaks
        return {"stages": memory_breakdown(spec, job["bucket"], frame)}
    method = _method(job, frame, parquet)
    time_once(method, frame)  # connections and first writes, outside the measured peaks
    return measure(method, frame)


def _report(peaks: dict[str, Any]) -> None:
    """The peaks of a round trip as they are measured: a long pass that dies still leaves its figures."""
    if "push" in peaks:
        figure = "heap" if "heap" in peaks["push"] else "upper"
        push, pull = peaks["push"][figure] / 1e6, peaks["pull"][figure] / 1e6
        progress(f"    peak extra memory ({figure}): push {push:,.1f} MB, pull {pull:,.1f} MB")


def main(out: Path, heap: bool) -> int:
    from include.xcom_backend.frames import ParquetCodec

    jobs: list[dict[str, Any]] = json.load(sys.stdin)
    if heap:
        counter = HeapCounter()
        not_counted = [job for job in jobs if job["kind"] not in HEAP_KINDS]
        if not_counted:
            raise ValueError(f"the heap pass measures round trips only, not {not_counted[0]}")

        def measure(method: Method, value: Any) -> dict[str, dict[str, int]]:
            return measure_heap(counter, method, value)
    else:
        require_tracing()
        measure = measure_memory
    results: list[dict[str, Any]] = []
    frames: dict[int, tuple[Any, bytes]] = {}
    for job in jobs:
        if job["kind"] == "bytes":
            frames.clear()
            progress(f"[{job['store']}] {job['size']:,} bytes: memory of {job['method']}")
            results.append(_run_bytes_job(job, measure))
            _report(results[-1])
            continue
        rows = job["rows"]
        if rows not in frames:
            frames.clear()
            frame = make_frame(rows)
            frames[rows] = (frame, ParquetCodec().encode(frame).data)
        frame, parquet = frames[rows]
        progress(f"[{job['store']}] {rows:,} rows: memory of {job.get('method', job['kind'])}")
        results.append(_run_job(job, frame, parquet, measure))
        _report(results[-1])
    out.write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    from tools.console import quiet_libraries

    quiet_libraries(False)
    sys.exit(main(Path(sys.argv[-1]), heap="--heap" in sys.argv[1:-1]))
