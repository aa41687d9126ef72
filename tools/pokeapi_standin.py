"""A local stand-in for PokeAPI, so the Pokémon DAG can be tested without internet access.

It answers ``GET /api/v2/pokemon/{name}`` from ``tests/data/pokeapi/{name}.json`` (real values for a
few Pokémon) and, like the real API, answers 404 with the body ``Not Found`` for any other name.
For retry tests it can answer the first N requests for a name with an error status instead.

In tests::

    with PokeApiStandin(failures={"pikachu": 2}) as api:
        ...  # point the DAG's `pokeapi_default` connection at api.base_url
        assert api.request_count("pikachu") == 3

By hand (serves until Ctrl-C)::

    python -m tools.pokeapi_standin --port 0 [--fail pikachu=2]
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "pokeapi"

# The name is part of a file path: anything but a plain PokeAPI-style name must never reach the disk.
_POKEMON_PATH = re.compile(r"^/api/v2/pokemon/(?P<name>[a-z0-9-]+)/?$")


class PokeApiStandin:
    """A PokeAPI stand-in served from a background thread on 127.0.0.1 (a free port by default)."""

    def __init__(
        self,
        data_dir: Path = DEFAULT_DATA_DIR,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        failures: Mapping[str, int] | None = None,
        failure_status: int = 503,
        quiet: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.failure_status = failure_status
        self.quiet = quiet
        self._failures_left: Counter[str] = Counter(failures or {})
        self._requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._make_handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What the DAG's connection must point at, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, name: str, count: int) -> None:
        """Answer the next ``count`` requests for ``name`` with ``failure_status``."""
        with self._lock:
            self._failures_left[name] = count

    def request_count(self, name: str) -> int:
        """How many requests for ``name`` arrived, failed ones included."""
        with self._lock:
            return self._requests[name]

    def start(self) -> PokeApiStandin:
        self._thread = threading.Thread(target=self._server.serve_forever, name="pokeapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> PokeApiStandin:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path``."""
        match = _POKEMON_PATH.match(urlsplit(path).path)
        if match is None:
            return 404, "text/plain", b"Not Found"
        name = match["name"]
        with self._lock:
            self._requests[name] += 1
            inject_failure = self._failures_left[name] > 0
            if inject_failure:
                self._failures_left[name] -= 1
        if inject_failure:
            return self.failure_status, "text/plain", b"Injected failure"
        data_file = self.data_dir / f"{name}.json"
        if not data_file.is_file():
            return 404, "text/plain", b"Not Found"
        return 200, "application/json; charset=utf-8", data_file.read_bytes()

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = standin._answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                # Access lines on stderr would drown test output; the CLI turns them back on.
                if not standin.quiet:
                    super().log_message(format, *args)

        return Handler


def _parse_failure(text: str) -> tuple[str, int]:
    name, sep, count = text.partition("=")
    if not sep or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=COUNT, got {text!r}")
    return name, int(count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local PokeAPI stand-in until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--fail",
        type=_parse_failure,
        action="append",
        default=[],
        metavar="NAME=COUNT",
        help="answer the first COUNT requests for NAME with --fail-status (repeatable)",
    )
    parser.add_argument("--fail-status", type=int, default=503)
    args = parser.parse_args(argv)

    standin = PokeApiStandin(
        args.data_dir,
        host=args.host,
        port=args.port,
        failures=dict(args.fail),
        failure_status=args.fail_status,
        quiet=False,
    )
    stop = threading.Event()
    # Explicit handlers: a background job of a non-interactive shell starts with SIGINT ignored, and
    # SIGTERM (kill, process managers) should shut down as cleanly as Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with standin:
        print(standin.base_url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
