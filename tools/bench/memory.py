"""Memory: tracemalloc for Python objects and numpy, pyarrow's allocator for Arrow buffers."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tools.bench.methods import Method

if TYPE_CHECKING:
    import pandas as pd


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
    require_tracing()
    gc.collect()
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
    return {"push": push, "pull": pull}


def memory_figures(peaks: dict[str, dict[str, int]], value_bytes: int) -> dict[str, Any]:
    """The figures of one round trip's memory entry: the larger stage's peak by each measure, and its
    ratio to the value's size. The judged one, ``peak_bytes``/``ratio``, is the heap pass's exact count;
    the memory pass's bounds of the Python + Arrow peak are beside it (``upper``, ``sampled``)."""
    figures: dict[str, Any] = {"push": peaks["push"], "pull": peaks["pull"]}
    for figure, suffix in (("heap", ""), ("upper", "_upper"), ("sampled", "_sampled")):
        peak = max(peaks["push"][figure], peaks["pull"][figure])
        figures[f"peak{suffix}_bytes"] = peak
        figures[f"ratio{suffix}"] = peak / value_bytes
    return figures


def measure_call(call: Callable[[], Any]) -> dict[str, int]:
    """Peak extra bytes of one call, as `measure_memory` counts them for one stage."""
    require_tracing()
    gc.collect()
    sampler = ArrowSampler(tracemalloc.get_traced_memory()[0])
    sampler.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        peaks = sampler.stage_peaks()
        del result
    finally:
        sampler.halt()
    return peaks


def require_tracing() -> None:
    """Tracing must have been on since the interpreter started, and stay on.

    Starting or stopping tracemalloc while other threads run (the SDKs', fsspec's, Arrow's pool) crashes
    CPython before 3.12.9 (python/cpython#128679; docs/repro/tracemalloc_race.md), so the memory pass
    runs in a process of its own, `python -X tracemalloc=1 -m tools.bench.memory_pass`.
    """
    if not tracemalloc.is_tracing():
        raise RuntimeError(
            "memory is measured only in a process started with -X tracemalloc=1 "
            "(tools.bench.memory_pass); see docs/repro/tracemalloc_race.md"
        )
