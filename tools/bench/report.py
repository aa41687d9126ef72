"""The results as Markdown: the tables printed at the end of a run, and docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

from tools.bench.config import (
    DECODE_STEP,
    ENCODE_STEP,
    FRAME_FORMAT_NAME,
    METHODS,
    PANDAS_FORMAT,
    SMALL_THRESHOLD,
    TARGET_ROWS,
    THRESHOLD_SETTING,
)


def find_entry(timings: list[dict[str, Any]], store: str, method: str, rows: int) -> dict[str, Any] | None:
    for entry in timings:
        if (entry["store"], entry["method"], entry["rows"]) == (store, method, rows):
            return entry
    return None


_METHOD_DESCRIPTIONS = {
    "pandas": f"the project's pandas backend as configured by default ({FRAME_FORMAT_NAME}), "
    "`serialize_value` then `deserialize_value`",
    "floor": "the frame's Parquet bytes (lz4, as the Parquet format writes them), encoded beforehand, "
    "put and got with the adapter's SDK client",
    "parquet": f"the same backend with `{PANDAS_FORMAT}=parquet`",
    "csv": f"the same backend with `{PANDAS_FORMAT}=csv`, the tutorial's format",
    "commonio": "Airflow's common.io `XComObjectStorageBackend` on an fsspec path of the same store "
    "(threshold 0, so the frame always goes to the store; it stores Airflow's JSON encoding, in which "
    "a DataFrame is Parquet written out as hex); on the S3 API it runs in a child process in a venv of "
    "its own (`tools/bench/commonio-s3.lock`: s3fs cannot share the project's botocore), timed there the "
    "same way and summarised with the same statistics",
    "handwritten": "what a user writes instead of a backend: `df.to_parquet()` with pandas' defaults, "
    "put and got with the floor's client, then `pd.read_parquet`",
    "codec": f"{FRAME_FORMAT_NAME} encode + decode as the backend does them, no store (a reference line)",
}

METHOD_LABELS = {
    "pandas": f"pandas backend ({FRAME_FORMAT_NAME})",
    "floor": "floor: SDK put+get of the Parquet bytes",
    "parquet": "pandas backend, Parquet",
    "csv": "pandas backend, CSV",
    "commonio": "common.io XComObjectStorageBackend",
    "handwritten": "hand-written to_parquet + read_parquet",
    "codec": f"{FRAME_FORMAT_NAME} encode+decode only (no store)",
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
        + ["–" if f.get("stored_bytes") is None else _mb(f["stored_bytes"])]
        + [_seconds(timings, "-", "codec", f)]
        for f in result["frames"]
    ]
    parts.append("**Frames** (in-memory size is `df.memory_usage(deep=True).sum()`)\n")
    parts.append(
        _table(
            [
                "rows",
                "in memory",
                "Parquet",
                FRAME_FORMAT_NAME,
                f"{FRAME_FORMAT_NAME} encode+decode, no store",
            ],
            sizes,
        )
    )

    parts += _round_trips(result, stores, result["config"]["repeat"])
    shaped = result.get("shaped")
    if shaped and "link_unavailable" not in shaped:
        parts.append(f"\n**Over the shaped link**: {shaped['link']['description']}\n")
        parts += _round_trips(shaped, stores, result["config"]["repeat"])
    elif shaped:
        parts.append(f"\n**Over the shaped link**: not measured, {shaped['link_unavailable']}\n")

    if result["memory"]:
        mem_rows = [
            [
                m["store"],
                m["method"],
                f"{m['rows']:,}",
                _mb(m["push"]["heap"]) + f" ({_mb(m['push']['python'])} + {_mb(m['push']['arrow'])})",
                _mb(m["pull"]["heap"]) + f" ({_mb(m['pull']['python'])} + {_mb(m['pull']['arrow'])})",
                _ratios(m),
            ]
            for m in result["memory"]
        ]
        parts.append(
            "\n**Peak extra memory of one round trip** (per stage: the heap pass's exact peak, with the "
            "memory pass's Python + Arrow peaks in brackets; ratio = the larger stage's exact peak / frame "
            "size, with the Python + Arrow combined peak's bounds in brackets: sampled at one instant "
            "and the sum of the two peaks)\n"
        )
        parts.append(_table(["store", "method", "rows", "push peak", "pull peak", "ratio"], mem_rows))

    small_rows = [
        [
            s["value"],
            f"{s['json_bytes']:,} B",
            _micros(s["backend_stats_us"]),
            _micros(s["database_stats_us"]),
            _x(s["ratio"]),
        ]
        for s in result["small_values"]
    ]
    parts.append(
        f"\n**Small values, push + pull in-process** ({THRESHOLD_SETTING}={SMALL_THRESHOLD}; median per "
        "call, with the IQR and σ of the blocks)\n"
    )
    parts.append(
        _table(["value", "JSON", "backend, threshold on", "Airflow database XCom", "ratio"], small_rows)
    )

    target_rows = [
        [
            t["target"],
            t.get("link", "loopback") if t["store"] != "-" else "–",
            t["store"],
            "–" if t["rows"] is None else f"{t['rows']:,}",
            *_judged(t),
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
    parts.append(_table(["target", "link", "store", "rows", "measured", "target", "status"], target_rows))

    if "scale" in result:
        parts += _scale_tables(result)

    if result["unavailable"]:
        parts.append("\n**Not measured**\n")
        parts += [f"- {u['store']} {u['method']}: {u['reason']}" for u in result["unavailable"]]
    if result["notes"]:
        parts.append("\n**Notes from the checks**\n")
        parts += [f"- {n}" for n in result["notes"]]
    return "\n".join(parts) + "\n"


def _judged(target: dict[str, Any]) -> list[str]:
    """The measured value and the limit of a target, as the targets table shows them."""
    if target["direction"] == "within":
        low, high = target["limit"]
        return ["–" if target["value"] is None else f"{target['value']:.3f}", f"{low}..{high}"]
    return [_x(target["value"]), f"{target['direction']} {target['limit']}×"]


def _scale_tables(result: dict[str, Any]) -> list[str]:
    """The scale series per store: time and memory at each size, the bytes value, the linearity fit."""
    scale = result["scale"]
    memory = {(m["store"], m["rows"]): _ratios(m) for m in result["memory"] if m["method"] == "pandas"}
    frame_bytes = {f["rows"]: f["memory_bytes"] for f in result["frames"]}
    size = scale["bytes"]["value_bytes"]
    bytes_label = f"{size / 2**20:,.0f} MiB `bytes`"
    bytes_memory = {m["store"]: _ratios(m) for m in scale["bytes"]["memory"]}
    rows = []
    for store in result["config"]["stores"]:
        for n in scale["rows"]:
            pandas = find_entry(result["timings"], store, "pandas", n)
            floor = find_entry(result["timings"], store, "floor", n)
            rows.append(
                [
                    store,
                    f"{n:,} rows",
                    _mb(frame_bytes[n]),
                    *_scale_cells(pandas, floor, frame_bytes[n]),
                    memory.get((store, n), "–"),
                ]
            )
        entries = {e["method"]: e for e in scale["bytes"]["timings"] if e["store"] == store}
        rows.append(
            [
                store,
                bytes_label,
                _mb(size),
                *_scale_cells(entries.get("pandas"), entries.get("floor"), size),
                bytes_memory.get(store, "–"),
            ]
        )
    fits = [
        [line["store"], f"{line['sizes'][0]:,}..{line['sizes'][-1]:,} rows", f"{line['slope']:.3f}"]
        for line in scale["linearity"]
    ]
    return [
        f"\n**Scale series** (loopback, pandas backend and floor, median of {result['config']['repeat']} "
        f"runs, every run checked exact; memory = exact peak extra heap / value size, with the bounds of "
        f"the Python + Arrow combined peak in brackets; {scale['seconds']:.0f} s for "
        "the sizes the main pass lacks and the bytes value)\n",
        _table(
            ["store", "value", "in memory", "pandas", "floor", "pandas / floor", "pandas per MB", "memory"],
            rows,
        ),
        "\n**Linearity**: least-squares slope of log(pandas round trip) on log(rows); 1 is linear\n",
        _table(["store", "fitted over", "slope"], fits),
    ]


def _ratios(memory: dict[str, Any]) -> str:
    """A memory entry's judged ratio (the heap pass's exact peak), and the memory pass's bounds of the
    Python + Arrow peak: the largest sum seen at one instant, and the sum of the two peaks."""
    return f"{memory['ratio']:.2f}× ({memory['ratio_sampled']:.2f}–{memory['ratio_upper']:.2f}×)"


def _scale_cells(pandas: dict[str, Any] | None, floor: dict[str, Any] | None, size: int) -> list[str]:
    ratio = pandas["median_s"] / floor["median_s"] if pandas and floor else None
    return [
        "–" if pandas is None else f"{pandas['median_s']:.3f} s",
        "–" if floor is None else f"{floor['median_s']:.3f} s",
        _x(ratio),
        "–" if pandas is None else f"{pandas['median_s'] / size * 1e9:.2f} ms",
    ]


def _round_trips(result: dict[str, Any], stores: list[str], repeat: int) -> list[str]:
    """The round-trip table and the ratios of its medians, for one link."""
    timings = result["timings"]
    peers = ("floor", "parquet", "csv", "commonio", "handwritten")
    methods = [m for m in peers if any(t["method"] == m for t in timings)]
    labels = {
        "floor": "floor",
        "parquet": "Parquet",
        "csv": "CSV",
        "commonio": "common.io",
        "handwritten": "hand-written",
    }
    header = ["store", "rows", "pandas (push + pull)", *(labels[m] for m in methods)]
    rows = []
    for store in stores:
        for f in result["frames"]:
            entry = find_entry(timings, store, "pandas", f["rows"])
            pandas = (
                f"{entry['median_s']:.3f} s ({entry['push_median_s']:.3f} + {entry['pull_median_s']:.3f}), "
                f"{_spread(entry['iqr_s'], entry['stddev_s'], 3)}"
                if entry
                else "–"
            )
            rows.append([store, f"{f['rows']:,}", pandas] + [_seconds(timings, store, m, f) for m in methods])
    ratio_keys = {m: "pandas_vs_floor" if m == "floor" else f"{m}_vs_pandas" for m in peers}
    ratio_labels = {m: "pandas / floor" if m == "floor" else f"{labels[m]} / pandas" for m in peers}
    ratio_rows = [
        [r["store"], f"{r['rows']:,}", *(_x(r[ratio_keys[m]]) for m in methods)] for r in result["ratios"]
    ]
    return [
        f"\n**Round trip, median of {repeat} runs** (push + pull, seconds; IQR and standard deviation σ "
        "of the runs)\n",
        _table(header, rows),
        "\n**Ratios of those medians**\n",
        _table(["store", "rows", *(ratio_labels[m] for m in methods)], ratio_rows),
    ]


def _spread(iqr: float, stddev: float, digits: int) -> str:
    return f"IQR {iqr:.{digits}f}, σ {stddev:.{digits}f}"


def _micros(stats: dict[str, float]) -> str:
    return f"{stats['median']:.1f} µs ({_spread(stats['iqr'], stats['stddev'], 1)})"


def _seconds(timings: list[dict[str, Any]], store: str, method: str, frame: dict[str, Any]) -> str:
    entry = find_entry(timings, store, method, frame["rows"])
    if entry is None:
        return "–"
    return f"{entry['median_s']:.3f} s ({_spread(entry['iqr_s'], entry['stddev_s'], 3)})"


def _stage_summary(stages: list[dict[str, Any]]) -> str:
    """One sentence: how much of the round trip is encoding, checksums, and the store's transfer."""
    t = {s["stage"]: s["median_s"] for s in stages}
    codec = t.get(ENCODE_STEP, 0.0) + t.get(DECODE_STEP, 0.0)
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
        f"{FRAME_FORMAT_NAME} encoding and decoding take {codec:.3f} s ({codec / total:.0%} of the "
        "steps' sum), the "
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


_SCALE_CHART = "\n![scale series: time and memory against the value's size](bench-scale.png)\n"


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
{c["repeat"]} timed runs per method after one untimed warm-up (which also checks the value came back);
medians, IQRs and standard deviations are computed by pytest-benchmark's `Stats`.

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
The floor puts and gets the frame's Parquet bytes with the adapter's bare SDK call (boto3, minio,
google-cloud-storage, azure-storage-blob, configured as the adapter configures them), so
`pandas / floor` includes the {FRAME_FORMAT_NAME} encoding and decoding, the checksums and the backend's
own work; the floor stays Parquet whatever format the backend writes, so a larger stored file cannot
lower the ratio.

Memory is measured on a separate run, in a process of its own started with `-X tracemalloc=1` so that
tracing is never started or stopped while other threads run (that crashes CPython 3.11:
[docs/repro/tracemalloc_race.md](repro/tracemalloc_race.md)), with `tracemalloc` (Python objects and
numpy arrays, exact peak) plus pyarrow's allocator (`pa.total_allocated_bytes()` sampled every
millisecond by a thread, and the pool's `max_memory()` when it rises): the peak of each stage above
what was allocated before the push, counting the frame the pull returns. Those two counters cannot be
read together at every instant, so they only bound the combined peak: from below by the largest sum
sampled, from above by the sum of the two peaks. The judged figure comes from a third run, the heap
pass (`tools/bench/heap.py`): the same round trips in a process where Python allocates with malloc
(`PYTHONMALLOC=malloc`), Arrow too (`ARROW_DEFAULT_MEMORY_POOL=system`), and a preloaded library
(`tools/bench/heap_peak.c`, built with the machine's C compiler) counts every malloc, realloc and free
of every thread in one counter: the exact peak of the heap at any instant above what was held before
the push, the SDKs' and C libraries' allocations included, tracemalloc's none. It counts the
allocator's usable sizes, and a realloc that copies a block on the heap as holding both blocks for
the copy (one that glibc moves with mremap as one). Memory-mapped files and thread stacks are not heap
and are not counted.

Small values: with `{THRESHOLD_SETTING}={SMALL_THRESHOLD}` an int and a 1 kB dict stay in
Airflow's database, so the backend's `serialize_value`/`deserialize_value` return the value inline;
they are timed in-process against `BaseXCom.serialize_value`/`deserialize_value` (Airflow's default
database XCom). The database write and read, the same on both sides, are not part of either.

## Results

{render_tables(result)}
![time vs rows](bench.png)
{_SCALE_CHART if "scale" in result else ""}
## Where the time goes
{render_profiles(result) if missed else chr(10) + "Every target was met; no profile was taken." + chr(10)}"""
