"""The round trips again over a cloud-like link: the same servers and buckets, the client in a network
namespace behind a shaped veth pair (tools/shaped_link.py).

Loopback shows what each path costs in CPU; the shaped link shows what a user of a store in the same
region sees. The parent starts the link and runs `python -m tools.bench.shaped OUT` inside it with its
own environment (the servers' endpoints, the buckets); that child times the frames as on loopback,
without the memory pass and the profiles (neither depends on the link), and writes its results to OUT.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tools.bench.child import run_child
from tools.bench.config import SHAPED_METHODS, BenchConfig
from tools.console import progress
from tools.servers import LocalServers
from tools.shaped_link import LinkError, shaped_link


def run_shaped(config: BenchConfig, servers: LocalServers, buckets: dict[str, str]) -> dict[str, Any]:
    """The frame timings over the shaped link, or ``{"link_unavailable": why}`` where it cannot be built."""
    ports = [server.port for server in servers.servers.values()]
    methods = tuple(m for m in SHAPED_METHODS if m in config.methods)
    child = dataclasses.replace(config, memory=False, profile=False, links=("shaped",), methods=methods)
    try:
        with shaped_link(ports, rate=config.link_rate, delay_ms=config.link_delay_ms) as link:
            progress(f"shaped link: {link.describe()}")
            command = link.command([sys.executable, "-m", "tools.bench.shaped"])
            request = {"config": dataclasses.asdict(child), "buckets": buckets}
            result = run_child("shaped-link pass", command, request)
            result["link"] = {"description": link.describe(), "qdiscs": link.qdiscs()}
    except LinkError as error:
        progress(f"shaped link unavailable: {error}")
        return {"link_unavailable": str(error)}
    return result


def main(out: Path) -> int:
    from tools.bench.run import bench_frames

    request = json.load(sys.stdin)
    fields = request["config"]
    config = BenchConfig(
        **{key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()}
    )
    result = bench_frames(config, request["buckets"])
    out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    from tools.console import quiet_libraries

    quiet_libraries(False)
    sys.exit(main(Path(sys.argv[1])))
