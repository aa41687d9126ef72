"""What a run writes: bench.json, benchmarks.md and the log-log charts bench.png and bench-scale.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.bench.config import STORE_SPECS, TARGET_MEMORY
from tools.bench.report import METHOD_LABELS, render_markdown


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
        "parquet": {"marker": "P", "color": "tab:brown"},
        "csv": {"marker": "^", "color": "tab:red"},
        "commonio": {"marker": "D", "color": "tab:purple"},
        "handwritten": {"marker": "v", "color": "tab:orange"},
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
                (line,) = ax.plot(xs, ys, label=METHOD_LABELS[method], **style)
                legend.setdefault(METHOD_LABELS[method], line)
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


def write_scale_plot(result: dict[str, Any], path: Path) -> None:
    """The scale series, log-log against the value's size in memory: round-trip time per store (pandas
    solid, floor dashed, the bytes value as a star), and peak extra memory / value size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = result["scale"]
    sizes = set(scale["rows"])
    frame_bytes = {f["rows"]: f["memory_bytes"] for f in result["frames"]}
    value_bytes = scale["bytes"]["value_bytes"]
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for store, color in zip(result["config"]["stores"], colors, strict=False):
        for method, style in (("pandas", "-"), ("floor", "--")):
            points = sorted(
                (frame_bytes[e["rows"]], e["median_s"])
                for e in result["timings"]
                if e["store"] == store and e["method"] == method and e["rows"] in sizes
            )
            if points:
                xs, ys = zip(*points, strict=True)
                time_ax.plot(xs, ys, style, marker="o", color=color, label=f"{store} {method}")
            for e in scale["bytes"]["timings"]:
                if e["store"] == store and e["method"] == method:
                    filled = color if method == "pandas" else "none"
                    star = {"markersize": 12, "color": color, "markerfacecolor": filled}
                    time_ax.plot([value_bytes], [e["median_s"]], "*", **star)
        ratios = sorted(
            (frame_bytes[m["rows"]], m["ratio"])
            for m in result["memory"]
            if m["store"] == store and m["method"] == "pandas" and m["rows"] in sizes
        )
        if ratios:
            xs, ys = zip(*ratios, strict=True)
            memory_ax.plot(xs, ys, "-", marker="o", color=color, label=store)
        for m in scale["bytes"]["memory"]:
            if m["store"] == store:
                memory_ax.plot([value_bytes], [m["ratio"]], "*", markersize=12, color=color)
    memory_ax.axhline(TARGET_MEMORY, color="black", linestyle=":", label=f"target {TARGET_MEMORY}×")
    time_ax.set_ylabel("round trip, median seconds")
    time_ax.set_title("time (frames: lines; bytes value: stars, hollow = floor)", fontsize=10)
    memory_ax.set_ylabel("peak extra memory / value size")
    memory_ax.set_title("memory of the pandas backend (bytes value: stars)", fontsize=10)
    for ax in (time_ax, memory_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("value size in memory, bytes")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """bench.json, benchmarks.md, bench.png and (with the scale series) bench-scale.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "bench.json",
        "markdown": out_dir / "benchmarks.md",
        "plot": out_dir / "bench.png",
    }
    paths["json"].write_text(json.dumps(result, indent=1) + "\n")
    paths["markdown"].write_text(render_markdown(result))
    write_plot(result, paths["plot"])
    if "scale" in result:
        paths["scale_plot"] = out_dir / "bench-scale.png"
        write_scale_plot(result, paths["scale_plot"])
    return paths
