"""Benchmark of the pandas XCom backends against the stores' own SDKs, CSV, and Airflow's common.io backend.

For each store of the store table that has a local server (S3 API and MinIO on SeaweedFS, GCS on
fake-gcs-server, Azure Blob on Azurite) and each frame size it times one XCom round trip, push
(`serialize_value`) then pull (`deserialize_value`), by:

* ``pandas``   the project's pandas backend (Parquet), exactly as a task calls it;
* ``floor``    the same Parquet bytes put and got with the adapter's bare SDK call, no backend code:
               what the store and the SDK cost on their own;
* ``csv``      the same backend with the pandas format set to csv (the tutorial's format);
* ``commonio`` Airflow's common.io ``XComObjectStorageBackend`` (fsspec), where its filesystem exists;
               on the S3 API (s3fs, which cannot share this venv) in a child process in a venv of
               its own, ``.venv-commonio-s3`` from ``commonio-s3.lock``, built on first use;
* ``handwritten`` what a user writes instead: ``df.to_parquet()`` put with the floor's client, got
               back and read with ``pd.read_parquet``.

``codec`` (Parquet encode + decode, no store) is timed once per size as a reference. Then it measures
the peak extra memory of each round trip (``memory_pass``, a process of its own, tracemalloc and
Arrow's pool; then ``heap``, one exact counter of every allocation, the judged figure), the in-process cost
of small values kept in the database by the threshold against Airflow's default database XCom, and the
round trips again over a cloud-like link (``shaped``: a network namespace behind a veth pair, tbf at
1 Gbit/s and 5 ms each way; needs root). The scale series (``scale``, loopback, pandas and floor)
adds 10,000,000 rows and a 1 GiB bytes value and judges whether time grows linearly with size.
It prints the tables and the targets, and writes ``bench.json``, ``benchmarks.md``, ``bench.png``
and ``bench-scale.png`` (to ``docs/`` unless ``--out-dir``).

    make bench                                  # 10k, 100k and 1M rows, 3 runs each, + the scale series
    make bench BENCH_ARGS="--no-scale"          # without the scale series (10M rows, 1 GiB bytes)
    make bench BENCH_ARGS="--scale-only"        # only the scale series, on loopback
    make bench BENCH_ARGS="--rows 10000,100000 --stores s3,gcs --repeat 5"
    make bench BENCH_ARGS="--verbose"           # with the libraries' INFO logs
    make bench BENCH_ARGS="--huge"              # 10M rows with every method (~6 GB of RAM, ~15 min)
    make bench BENCH_ARGS="--links loopback"    # without the shaped link

Each timing is summarised (median, IQR, stddev, min, max, mean, rounds) by pytest-benchmark's
statistics class; ratios and targets use the medians. One module per concern: ``config`` (sizes,
targets, stores), ``data``, ``methods``, ``memory``, ``heap`` (and its ``heap_peak.c``), ``stats``,
``run``, ``scale``, ``profiling``, ``machine``, ``report`` and ``outputs``, the child processes
``memory_pass``, ``shaped`` and ``commonio_s3`` (with its venv, ``commonio_venv``), with the command
line in ``cli``.
"""

from tools.bench.cli import main, parse_args
from tools.bench.config import (
    DEFAULT_ROWS,
    HUGE_ROWS,
    METHODS,
    QUICK_ROWS,
    QUICK_SCALE_BYTES,
    QUICK_SCALE_ROWS,
    SCALE_BYTES,
    SCALE_ROWS,
    STORE_SPECS,
    BenchConfig,
)
from tools.bench.outputs import write_outputs
from tools.bench.run import run

__all__ = [
    "DEFAULT_ROWS",
    "HUGE_ROWS",
    "METHODS",
    "QUICK_ROWS",
    "QUICK_SCALE_BYTES",
    "QUICK_SCALE_ROWS",
    "SCALE_BYTES",
    "SCALE_ROWS",
    "STORE_SPECS",
    "BenchConfig",
    "main",
    "parse_args",
    "run",
    "write_outputs",
]
