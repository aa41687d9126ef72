"""What a run writes: bench.json, benchmarks.md and the log-log chart bench.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.bench.config import STORE_SPECS
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
