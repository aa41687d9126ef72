"""``python -m tools.servers``: run the local servers until Ctrl-C, printing the `export` lines."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
from pathlib import Path

from tools.console import quiet_libraries
from tools.servers.local import LocalServers, store_servers
from tools.servers.registry import SERVERS
from tools.servers.supervisor import ServerStartError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.servers",
        description="Run the local servers of the XCom stores until Ctrl-C.",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where the servers keep their files (default: a new temp dir)"
    )
    parser.add_argument("--env-file", type=Path, help="also write the `export` lines to this file")
    parser.add_argument(
        "--servers",
        default=",".join(store_servers()),
        help=f"comma-separated, from {', '.join(SERVERS)} (default: every store's server)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    quiet_libraries(args.verbose)

    servers = LocalServers(args.data_dir, names=names)
    try:
        servers.start()
    except ServerStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(servers.stop)
        servers.create_default_buckets()
        lines = [f"export {key}={shlex.quote(value)}" for key, value in servers.env().items()]
        if args.env_file:
            args.env_file.write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
        print(
            f"\n# started in {servers.startup_seconds:.1f} s; data and logs in {servers.base_dir}\n"
            "# Ctrl-C stops the servers.",
            file=sys.stderr,
        )
        stopping = threading.Event()
        # Installed explicitly: a shell starting this in the background hands it SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        while not stopping.wait(1.0):
            dead = [s.label for s in servers.servers.values() if not s.is_running()]
            if dead:
                print(f"# {', '.join(dead)} exited unexpectedly; stopping", file=sys.stderr)
                return 1
        print("# stopping ...", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
