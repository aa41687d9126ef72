"""The heap pass: every byte a process allocates, counted exactly at every instant.

tracemalloc sees Python's objects and numpy's arrays, and pyarrow's pool its own buffers, but no one
counter sees both at once, so the memory pass can only bound their combined peak (the sum of the two
peaks) from above and sample it from below. The heap pass runs the same jobs in a process where
everything goes through malloc, counted by a small preloaded library (`heap_peak.c`):

- ``PYTHONMALLOC=malloc``: Python's objects come from malloc, not from pymalloc's arenas;
- ``ARROW_DEFAULT_MEMORY_POOL=system``: Arrow's buffers too, not from its bundled allocator;
- ``LD_PRELOAD``: malloc, calloc, realloc, free and the aligned variants add to or take from one
  counter, whose high-water mark the pass resets at the start of each stage.

The figure is the allocator's usable bytes, SDK internals and C libraries included: what the process
holds on its heap, not what it maps (thread stacks, memory-mapped files) and not how much of it the
allocator keeps cached. No tracemalloc in that process, so tracing costs nothing in the figure.
"""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.bench.methods import Method

SOURCE = Path(__file__).with_name("heap_peak.c")
# Set in the heap pass's process, and checked there: a figure without them would miss Python's or
# Arrow's share.
REQUIRED_ENV = {"PYTHONMALLOC": "malloc", "ARROW_DEFAULT_MEMORY_POOL": "system"}


class HeapCounterError(RuntimeError):
    """The counter cannot be built, or this process was not started with it."""


@contextmanager
def built_counter() -> Iterator[Path]:
    """Compile `heap_peak.c` into a temporary shared library (a C compiler is needed: `cc`, or `$CC`)."""
    import tempfile

    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise HeapCounterError(f"the heap pass needs a C compiler for {SOURCE.name}: no {compiler!r} on PATH")
    with tempfile.TemporaryDirectory(prefix="heap-peak-") as tmp:
        library = Path(tmp) / "heap_peak.so"
        proc = subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise HeapCounterError(f"{compiler} could not build {SOURCE.name}:\n{proc.stderr}")
        yield library


def counted_environment(library: Path) -> dict[str, str]:
    """The environment of a process whose every allocation the counter sees."""
    preload = " ".join(p for p in (str(library), os.environ.get("LD_PRELOAD", "")) if p)
    return {**os.environ, **REQUIRED_ENV, "LD_PRELOAD": preload}


class HeapCounter:
    """The preloaded counter, read through ctypes."""

    def __init__(self) -> None:
        wrong = {k: os.environ.get(k) for k, v in REQUIRED_ENV.items() if os.environ.get(k) != v}
        if wrong:
            raise HeapCounterError(f"the heap pass needs {REQUIRED_ENV}; this process has {wrong}")
        # dlopen(NULL) searches the preloaded library first; a counter loaded only now would have
        # missed every allocation before, so it must already be there.
        process = ctypes.CDLL(None)
        try:
            self._current = process.heap_peak_current
            self._peak = process.heap_peak_peak
            self._reset = process.heap_peak_reset
        except AttributeError:
            raise HeapCounterError(
                "the heap pass's process was started without the counter in LD_PRELOAD "
                "(tools.bench.heap.counted_environment)"
            ) from None
        self._current.restype = self._peak.restype = ctypes.c_int64
        import pyarrow as pa

        if pa.default_memory_pool().backend_name != "system":
            raise HeapCounterError(f"Arrow allocates with {pa.default_memory_pool().backend_name}, unseen")

    def current(self) -> int:
        return int(self._current())

    def peak(self) -> int:
        return int(self._peak())

    def reset_peak(self) -> None:
        self._reset()


def measure_heap(counter: HeapCounter, method: Method, value: Any) -> dict[str, dict[str, int]]:
    """Exact peak extra heap bytes of one push and of one pull, above what was held before the push
    (the pull's counts the value it returns), as ``{"push": {"heap": n}, "pull": {"heap": n}}``."""
    gc.collect()
    with method.configured():
        base = counter.current()
        counter.reset_peak()
        handle = method.push(value)
        push = counter.peak() - base
        counter.reset_peak()
        result = method.pull(handle)
        pull = counter.peak() - base
        del result
        method.cleanup(handle)
    return {"push": {"heap": max(push, 0)}, "pull": {"heap": max(pull, 0)}}
