"""`make bench` still runs and reports what it should: the quick mode against the session's local stores.

Only the shape of the output is checked (every method, positive numbers, ratios taken from the medians):
timings on a shared machine say nothing about correctness, so no assertion here depends on them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The benchmark's statistics come from pytest-benchmark, a dev-only package the Astro image lacks.
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark (requirements-dev.in) is not installed")

from include.xcom_backend.registry import TABLE
from tools import bench
from tools.bench.scale import judge_linearity
from tools.servers import LocalServers

# A bound on a hang, not a speed target: the quick run starts half a dozen Pythons that each import
# Airflow (the memory pass, the shaped link's pass, common.io's own venv for both), which took over
# the default 600 s on a shared 2-core machine at a load average of 10.
RUN_TIMEOUT_S = 1500
pytestmark = [pytest.mark.stores, pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_S + 60)]

ROOT = Path(__file__).resolve().parents[2]

REQUIRED_METHODS = ("pandas", "floor", "parquet", "csv", "handwritten")


@pytest.fixture(scope="module")
def quick_result(local_stores: LocalServers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # `make bench` as a child process, reading back its bench.json: a crash of the benchmark (a native
    # segfault included) fails this test rather than the whole session, and is never retried.
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "tools.bench", "--quick", "--out-dir", str(out)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "bench.json").read_text())


def _entry(result: dict[str, Any], store: str, method: str, rows: int) -> dict[str, Any] | None:
    matches = [e for e in result["timings"] if (e["store"], e["method"], e["rows"]) == (store, method, rows)]
    assert len(matches) <= 1, f"{store} {method} {rows} measured twice"
    return matches[0] if matches else None


def test_quick_mode_covers_every_store_size_and_method(quick_result: dict[str, Any]) -> None:
    config = quick_result["config"]
    # Every store with a pandas backend and a local server, read from the store table.
    assert config["stores"] == [r.scheme for r in TABLE.values() if r.server and r.pandas_backend]
    assert set(config["stores"]) >= {"s3", "gcs", "wasb", "minio"}
    assert config["rows"] == list(bench.QUICK_ROWS)
    assert config["repeat"] >= 3
    unavailable = {(u["store"], u["method"]): u["reason"] for u in quick_result["unavailable"]}
    for rows in config["rows"]:
        assert _entry(quick_result, "-", "codec", rows) is not None
        for store in config["stores"]:
            for method in REQUIRED_METHODS:
                assert _entry(quick_result, store, method, rows) is not None, f"{store} {method} {rows}"
            # common.io either ran or says why it could not.
            commonio = _entry(quick_result, store, "commonio", rows)
            assert (commonio is not None) != ((store, "commonio") in unavailable)
            if commonio is None:
                assert unavailable[(store, "commonio")].strip()
    # On the S3 API it runs in its own venv (tools/bench/commonio-s3.lock), built on first use: the
    # lock installs and the child answers, on every size.
    for store in ("s3", "minio"):
        assert (store, "commonio") not in unavailable, unavailable.get((store, "commonio"))
    assert any("ran in a venv of its own" in note for note in quick_result["notes"]), quick_result["notes"]


def _check_summary(summary: dict[str, float], runs: list[float]) -> None:
    """A summary in bench.json describes exactly these runs (spread figures checked against the stdlib)."""
    assert summary["rounds"] == len(runs)
    assert summary["median"] == pytest.approx(statistics.median(runs))
    assert summary["mean"] == pytest.approx(statistics.mean(runs))
    assert summary["stddev"] == pytest.approx(statistics.stdev(runs))
    assert (summary["min"], summary["max"]) == (min(runs), max(runs))
    assert 0 <= summary["iqr"] <= summary["max"] - summary["min"]


def test_numbers_are_positive_and_medians_of_the_runs(quick_result: dict[str, Any]) -> None:
    repeat = quick_result["config"]["repeat"]
    for entry in quick_result["timings"]:
        assert len(entry["runs_s"]) == len(entry["push_runs_s"]) == len(entry["pull_runs_s"]) == repeat
        assert all(t > 0 for t in entry["runs_s"] + entry["push_runs_s"] + entry["pull_runs_s"])
        assert entry["median_s"] == pytest.approx(statistics.median(entry["runs_s"]))
        assert entry["push_median_s"] == pytest.approx(statistics.median(entry["push_runs_s"]))
        assert entry["pull_median_s"] == pytest.approx(statistics.median(entry["pull_runs_s"]))
        for part, runs in (("total", "runs_s"), ("push", "push_runs_s"), ("pull", "pull_runs_s")):
            _check_summary(entry["stats_s"][part], entry[runs])
        assert (entry["iqr_s"], entry["stddev_s"]) == (
            entry["stats_s"]["total"]["iqr"],
            entry["stats_s"]["total"]["stddev"],
        )
    for frame in quick_result["frames"]:
        assert frame["memory_bytes"] > 0 and frame["parquet_bytes"] > 0 and frame["stored_bytes"] > 0
        assert len(frame["dtypes"]) == 7


def test_ratios_are_computed_from_the_medians(quick_result: dict[str, Any]) -> None:
    ratios = quick_result["ratios"]
    assert len(ratios) == len(quick_result["config"]["stores"]) * len(quick_result["config"]["rows"])
    for ratio in ratios:
        store, rows = ratio["store"], ratio["rows"]

        def median(method: str, s: str = store, r: int = rows) -> float:
            entry = _entry(quick_result, s, method, r)
            assert entry is not None
            return entry["median_s"]

        assert ratio["pandas_vs_floor"] == pytest.approx(median("pandas") / median("floor"))
        assert ratio["csv_vs_pandas"] == pytest.approx(median("csv") / median("pandas"))
        assert ratio["parquet_vs_pandas"] == pytest.approx(median("parquet") / median("pandas"))
        assert ratio["handwritten_vs_pandas"] == pytest.approx(median("handwritten") / median("pandas"))
        if _entry(quick_result, store, "commonio", rows) is None:
            assert ratio["commonio_vs_pandas"] is None
        else:
            assert ratio["commonio_vs_pandas"] == pytest.approx(median("commonio") / median("pandas"))


def test_memory_and_small_values_are_measured(quick_result: dict[str, Any]) -> None:
    measured = {(m["store"], m["method"], m["rows"]) for m in quick_result["memory"]}
    for store in quick_result["config"]["stores"]:
        for rows in quick_result["config"]["rows"]:
            assert (store, "pandas", rows) in measured
            if _entry(quick_result, store, "commonio", rows) is not None:
                assert (store, "commonio", rows) in measured, "common.io's memory (its own venv's too)"
    for entry in quick_result["memory"]:
        assert entry["frame_bytes"] > 0 and entry["peak_bytes"] > 0
        # The judged figure is the heap pass's exact count; the memory pass's bounds stand beside it.
        assert entry["peak_bytes"] == max(entry["push"]["heap"], entry["pull"]["heap"])
        assert entry["peak_upper_bytes"] == max(entry["push"]["upper"], entry["pull"]["upper"])
        assert entry["ratio"] == pytest.approx(entry["peak_bytes"] / entry["frame_bytes"])
        for stage in ("push", "pull"):
            assert entry[stage]["upper"] == entry[stage]["python"] + entry[stage]["arrow"]
            assert entry[stage]["heap"] > 0
        if entry["method"] == "pandas":
            # The backend's pull returns the very frame pushed, and the heap counts it (pandas'
            # `memory_usage` and the allocator do not agree to the byte on a small frame).
            assert entry["pull"]["heap"] >= 0.9 * entry["frame_bytes"], entry

    small = {s["value"]: s for s in quick_result["small_values"]}
    assert set(small) == {"int", "dict_1kB"}
    assert 900 <= small["dict_1kB"]["json_bytes"] <= 1100
    for entry in small.values():
        assert entry["backend_median_us"] > 0 and entry["database_median_us"] > 0
        assert entry["backend_median_us"] == pytest.approx(statistics.median(entry["backend_runs_us"]))
        _check_summary(entry["backend_stats_us"], entry["backend_runs_us"])
        _check_summary(entry["database_stats_us"], entry["database_runs_us"])
        assert entry["ratio"] == pytest.approx(entry["backend_median_us"] / entry["database_median_us"])


def test_every_target_is_judged_and_every_miss_profiled(quick_result: dict[str, Any]) -> None:
    targets = quick_result["targets"]
    names = {t["target"] for t in targets}
    assert {"pandas round trip / floor", "CSV round trip / pandas round trip"} <= names
    assert "peak extra memory / frame size" in names
    assert sum(t["target"].startswith("small value") for t in targets) == 2
    for target in targets:
        assert target["status"] in ("PASS", "MISS")
        if target["direction"] == "within":
            # A slope: a quick series' fixed costs can make it flat or even falling.
            low, high = target["limit"]
            meets = low <= target["value"] <= high
        else:
            assert target["value"] > 0
            meets = (
                target["value"] >= target["limit"]
                if target["direction"] == ">="
                else target["value"] <= target["limit"]
            )
        assert meets == (target["status"] == "PASS")
    profiled = {(p["store"], p["target"]) for p in quick_result["profiles"]}
    for target in targets:
        # Profiles are taken on loopback: a miss only over the shaped link is the link's share.
        if target["status"] != "MISS" or target["link"] == "shaped":
            continue
        if target["target"].startswith("small value"):
            assert ("-", target["target"]) in profiled
        else:
            assert any(store == target["store"] for store, _ in profiled), target
    for profile in quick_result["profiles"]:
        # The memory profiles of every store are measured together, in one child, after the loop.
        if profile["kind"] == "memory":
            assert {s["stage"] for s in profile["stages_memory"]} >= {"store.put", "store.get"}, profile


def test_the_scale_series_is_measured_and_judged(quick_result: dict[str, Any]) -> None:
    scale = quick_result["scale"]
    stores = quick_result["config"]["stores"]
    assert scale["rows"] == list(bench.QUICK_SCALE_ROWS)
    # The quick series' sizes are the quick run's own: nothing to add, every size timed once.
    assert scale["added_rows"] == [] and scale["seconds"] > 0
    size = scale["bytes"]["value_bytes"]
    assert size == bench.QUICK_SCALE_BYTES
    timed = {(e["store"], e["method"]) for e in scale["bytes"]["timings"]}
    assert timed == {(store, method) for store in stores for method in ("pandas", "floor")}
    for entry in scale["bytes"]["timings"]:
        assert entry["value_bytes"] == size and len(entry["runs_s"]) == quick_result["config"]["repeat"]
        assert entry["median_s"] == pytest.approx(statistics.median(entry["runs_s"]))
    memory = {m["store"]: m for m in scale["bytes"]["memory"]}
    assert set(memory) == set(stores)
    for entry in memory.values():
        # The pull's peak counts the value it returns: at least the value itself.
        assert entry["pull"]["upper"] >= size and entry["pull"]["heap"] >= size
        assert entry["ratio"] == pytest.approx(entry["peak_bytes"] / size)
    fits = {line["store"]: line for line in scale["linearity"]}
    assert set(fits) == set(stores)
    for store, line in fits.items():
        times = {rows: _entry(quick_result, store, "pandas", rows)["median_s"] for rows in scale["rows"]}
        assert line == {"store": store, "method": "pandas", **judge_linearity(times)}
    judged = [t for t in quick_result["targets"] if t["target"].startswith("scale:")]
    assert {(t["store"], t["direction"]) for t in judged} == {
        (store, direction) for store in stores for direction in ("within", "<=")
    }


def test_outputs_are_written(quick_result: dict[str, Any], tmp_path: Path) -> None:
    paths = bench.write_outputs(quick_result, tmp_path)
    assert json.loads(paths["json"].read_text())["targets"] == quick_result["targets"]
    markdown = paths["markdown"].read_text()
    for heading in ("## Machine", "## Results", "**Targets**", "## Where the time goes"):
        assert heading in markdown
    assert quick_result["machine"]["cpu"] in markdown
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["scale_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**Scale series**" in markdown and "(bench-scale.png)" in markdown


def test_command_line_options() -> None:
    args = bench.parse_args(["--rows", "10000,100_000", "--repeat", "5", "--stores", "s3,gcs"])
    assert args.config.rows == (10_000, 100_000)
    assert args.config.repeat == 5
    assert args.config.stores == ("s3", "gcs")
    assert bench.parse_args([]).config.rows == bench.DEFAULT_ROWS
    assert bench.parse_args(["--huge"]).config.rows[-1] == bench.HUGE_ROWS
    assert bench.parse_args(["--links", "loopback"]).config.links == ("loopback",)
    default = bench.parse_args([]).config
    assert (default.scale, default.scale_rows, default.scale_bytes) == (True, bench.SCALE_ROWS, 2**30)
    assert bench.parse_args(["--no-scale"]).config.scale is False
    scale_only = bench.parse_args(["--scale-only"]).config
    assert scale_only.scale_only and scale_only.links == ("loopback",) and not scale_only.profile
    assert bench.parse_args(["--methods", "pandas,floor,parquet"]).config.methods == (
        "pandas",
        "floor",
        "parquet",
    )
    assert bench.parse_args([]).config.methods == bench.METHODS
    quick = bench.parse_args(["--quick"]).config
    assert (quick.scale_rows, quick.scale_bytes) == (bench.QUICK_SCALE_ROWS, bench.QUICK_SCALE_BYTES)
    wrong_ones = (
        ["--repeat", "2"],
        ["--stores", "s3,dropbox"],
        ["--rows", "ten"],
        ["--links", "shaped"],
        ["--no-scale", "--scale-only"],
        ["--methods", "pandas,parquet"],  # no floor to judge against
        ["--methods", "pandas,floor,orc"],
    )
    for wrong in wrong_ones:
        with pytest.raises(SystemExit):
            bench.parse_args(wrong)


def test_the_round_trips_are_timed_again_over_the_shaped_link(quick_result: dict[str, Any]) -> None:
    shaped = quick_result["shaped"]
    if os.geteuid() != 0:
        assert "needs root" in shaped["link_unavailable"]
        return
    assert "tbf 1gbit" in shaped["link"]["description"], shaped["link"]
    assert shaped["link"]["qdiscs"].count("tbf") == 2
    for rows in quick_result["config"]["rows"]:
        for store in quick_result["config"]["stores"]:
            for method in ("pandas", "floor"):
                assert _entry(shaped, store, method, rows) is not None, (store, method, rows)
            for method in ("csv", "parquet"):
                assert _entry(shaped, store, method, rows) is None, f"{method} is timed on loopback only"
    judged = {t["store"] for t in quick_result["targets"] if t["link"] == "shaped"}
    assert judged == set(quick_result["config"]["stores"])
    assert all(
        t["target"] == "pandas round trip / floor" for t in quick_result["targets"] if t["link"] == "shaped"
    )


def test_the_memory_pass_measures_only_with_tracing_from_the_start() -> None:
    check = "from tools.bench.memory import require_tracing; require_tracing()"
    late = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert late.returncode != 0 and "-X tracemalloc=1" in late.stderr, late.stderr[-2000:]
    early = [sys.executable, "-X", "tracemalloc=1", "-c", check]
    assert subprocess.run(early, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
