"""Reproducer of the benchmark's old memory-pass crash: CPython 3.11's tracemalloc.stop() racing with
Arrow's thread pool (python/cpython#128679, fixed in 3.12.9 and 3.13.2, never in 3.11).

    python docs/repro/tracemalloc_race.py 20              # start/stop per measurement: may SIGSEGV
    python -X tracemalloc=1 docs/repro/tracemalloc_race.py 20 --never-stop   # the benchmark's way now

pyarrow's `to_pandas` fills the frame's blocks on Arrow's own C++ threads, and each takes the GIL with
`PyGILState_Ensure`, which allocates a thread state through `PyMem_RawCalloc`, which tracemalloc's hook
records. If the main thread calls `tracemalloc.stop()` in between, the hook writes into the traceback
buffer stop() has just freed (`traceback_new`, Modules/_tracemalloc.c). Seen here in 1 of 9 runs of
20 s on 2 cores; the core's stack is in docs/benchmarks.md. With tracing started at interpreter start
and never stopped, that buffer is never freed and the window does not exist.
"""

from __future__ import annotations

import faulthandler
import io
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    faulthandler.enable()
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    never_stop = "--never-stop" in sys.argv
    if never_stop and not tracemalloc.is_tracing():
        sys.exit("--never-stop needs tracing from the start: python -X tracemalloc=1 ...")
    halt = threading.Event()
    frame = pd.DataFrame({"a": np.arange(300_000), "b": np.random.rand(300_000)})

    def convert() -> None:
        while not halt.is_set():
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="lz4")
            pq.read_table(pa.BufferReader(sink.getvalue())).to_pandas()

    pool = ThreadPoolExecutor(3)
    for _ in range(3):
        pool.submit(convert)
    deadline, cycles = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        if never_stop:
            tracemalloc.reset_peak()
            time.sleep(0.0005)
            tracemalloc.get_traced_memory()
        else:
            tracemalloc.start()
            time.sleep(0.0005)
            tracemalloc.stop()
        cycles += 1
    halt.set()
    pool.shutdown()
    print(f"survived {cycles} measurement cycles")


if __name__ == "__main__":
    main()
