"""`python -m tools.bench` / `make bench`: the command line, the local servers, the run, the outputs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import tools.bench
from tools.bench.config import (
    DEFAULT_ROWS,
    HUGE_ROWS,
    LINK_DELAY_MS,
    LINK_RATE,
    LINKS,
    METHODS,
    PROJECT_ROOT,
    QUICK_ROWS,
    QUICK_SCALE_BYTES,
    QUICK_SCALE_ROWS,
    SCALE_BYTES,
    SCALE_ROWS,
    STORE_SPECS,
    BenchConfig,
)
from tools.bench.outputs import write_outputs
from tools.bench.report import render_profiles, render_tables
from tools.bench.run import run
from tools.console import progress as _progress
from tools.console import quiet_libraries
from tools.servers import LocalServers, ServerStartError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=(tools.bench.__doc__ or "").split("\n\n")[0]
    )
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
    parser.add_argument(
        "--links",
        default=",".join(LINKS),
        help="comma-separated, from loopback,shaped (default both; shaped needs root and iproute2)",
    )
    parser.add_argument("--link-rate", default=LINK_RATE, help=f"tbf rate of the shaped link ({LINK_RATE})")
    parser.add_argument(
        "--link-delay-ms", type=float, default=LINK_DELAY_MS, help=f"added each way ({LINK_DELAY_MS:g} ms)"
    )
    parser.add_argument(
        "--no-scale",
        action="store_true",
        help=f"leave out the scale series ({','.join(map(str, SCALE_ROWS))} rows and a "
        f"{SCALE_BYTES / 2**20:,.0f} MiB bytes value, pandas and floor, loopback)",
    )
    parser.add_argument(
        "--scale-only",
        action="store_true",
        help="only the scale series: no other methods, small values, shaped link or profiles",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, from {','.join(METHODS)} (default all)",
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
    links = tuple(link.strip() for link in args.links.split(",") if link.strip())
    if "loopback" not in links or any(link not in LINKS for link in links):
        parser.error(f"--links must include loopback and take only {','.join(LINKS)}, got {args.links!r}")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not {"pandas", "floor"} <= set(methods) or any(m not in METHODS for m in methods):
        parser.error(f"--methods must include pandas and floor and take only {','.join(METHODS)}")
    if args.rows:
        try:
            rows = tuple(int(r.replace("_", "")) for r in args.rows.split(",") if r.strip())
        except ValueError:
            parser.error(f"--rows takes whole numbers separated by commas, got {args.rows!r}")
        if not rows or min(rows) < 1:
            parser.error("--rows needs at least one positive size")
    else:
        rows = QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.no_scale and args.scale_only:
        parser.error("--no-scale and --scale-only exclude each other")
    if args.scale_only:
        links = ("loopback",)
    if args.huge and HUGE_ROWS not in rows:
        rows = (*rows, HUGE_ROWS)
    config = BenchConfig(
        rows=tuple(sorted(set(rows))),
        repeat=args.repeat,
        stores=stores,
        quick=args.quick,
        memory=not args.no_memory,
        profile=not (args.no_profile or args.scale_only),
        small_loops=200 if args.quick else 2000,
        links=links,
        methods=methods,
        link_rate=args.link_rate,
        link_delay_ms=args.link_delay_ms,
        scale=not args.no_scale,
        scale_only=args.scale_only,
        scale_rows=QUICK_SCALE_ROWS if args.quick else SCALE_ROWS,
        scale_bytes=QUICK_SCALE_BYTES if args.quick else SCALE_BYTES,
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
