"""What every local server shares: its ports, its log, the wait until it is ready, and its shutdown.

A server module subclasses ``Server`` and declares only what is its own: the command, the readiness
check, the environment of its process (and, for tests, how a client talks to it). The supervisor:

* picks free loopback ports (``tools.servers.ports``), and retries with others if the server reports
  that one was taken between the check and its bind;
* appends the server's output to one log file (``<data_dir>/server.log``) and quotes its tail in errors;
* polls the readiness check until it passes, the process exits, or ``startup_timeout`` passes;
* stops the process group with SIGTERM, then SIGKILL after a grace period: on ``stop()``, at
  interpreter exit, or from a watchdog process if this interpreter dies without exit handlers.

This package must not import pytest: the demo and the benchmark use it too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, ClassVar, Self

from tools.servers import ports as _ports
from tools.servers.ports import HOST


class ServerStartError(RuntimeError):
    """A local server could not be started; the message says which, why, and how to fix it."""

    def __init__(
        self, server: str, reason: str, log_tail: str = "", log_path: Path | None = None, hint: str = ""
    ) -> None:
        self.server = server
        self.reason = reason
        self.log_tail = log_tail
        self.hint = hint
        parts = [f"{server} could not start: {reason}"]
        if log_tail.strip():
            parts.append(f"--- from {log_path or 'its log'} ---\n{log_tail.rstrip()}\n---")
        if hint:
            parts.append(hint)
        super().__init__("\n".join(parts))


class ServerNotInstalledError(ServerStartError):
    """The server's program (or the runtime it needs, such as Node.js) is missing."""


class _PortClash(Exception):
    pass


# Kills the server's process group when this interpreter dies without stopping it (SIGKILL, a CI
# time-out, os._exit): it waits for EOF on stdin, which the kernel delivers when our end closes.
# One byte on stdin means "stopped normally, exit quietly".
_WATCHDOG_CODE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
pgid, grace = int(sys.argv[1]), float(sys.argv[2])
if sys.stdin.buffer.read(1):
    sys.exit(0)
try:
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.2)
        os.killpg(pgid, 0)
    os.killpg(pgid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""
_WATCHDOG_GRACE_S = 10.0

_live_lock = threading.Lock()
_live: set[Server] = set()


def stop_all(servers: list[Server], timeout: float = 15.0) -> None:
    """Stop several servers in parallel (each one's SIGTERM grace runs at the same time)."""
    if servers:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: s.stop(timeout), servers))


def _stop_live_servers() -> None:
    with _live_lock:
        servers = list(_live)
    stop_all(servers, timeout=5.0)


atexit.register(_stop_live_servers)


def _tail(path: Path, lines: int = 25, start: int = 0) -> str:
    """The log since ``start``: its first lines (where usage errors appear before a long help text)
    and its last ones (where runtime errors appear)."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            head = fh.read(4096)
            fh.seek(0, os.SEEK_END)
            fh.seek(max(start, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    all_lines = text.splitlines()
    if len(all_lines) <= lines:
        return "\n".join(all_lines)
    first = head.decode("utf-8", "replace").splitlines()[:5]
    return "\n".join([*first, "[...]", *all_lines[-(lines - 5) :]])


class Server:
    """One server process on free loopback ports, with its files under ``data_dir``."""

    #: the server's name in the registry (``tools.servers.registry.SERVERS``) and the store table
    name: ClassVar[str] = "server"
    #: how messages call it
    label: ClassVar[str] = "server"
    #: one name per port it needs; the first is the one clients use
    port_names: ClassVar[tuple[str, ...]] = ("http",)
    #: for each port p, p + offset must be free too (e.g. a gRPC port the server derives)
    port_offsets: ClassVar[tuple[int, ...]] = ()
    #: words in the log by which the server reports a port taken by someone else
    port_clash_markers: ClassVar[tuple[str, ...]] = ("address already in use", "eaddrinuse")
    #: how to install it, appended to every start error
    install_hint: ClassVar[str] = ""

    def __init__(self, data_dir: Path | str, *, startup_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self.startup_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    # -- what each server declares ----------------------------------------------------------------

    def command(self) -> list[str]:
        """The program and its arguments; ``self.ports`` holds the chosen ports."""
        raise NotImplementedError

    def ready(self) -> None:
        """Raise unless the server answers a real request."""
        raise NotImplementedError

    def environment(self) -> dict[str, str | None]:
        """Changes to the inherited environment of the process; None removes a variable."""
        return {}

    def prepare(self) -> None:
        """Before each launch attempt, after the ports are chosen: files the command refers to."""

    def cleanup(self) -> None:
        """Once the process is gone (also when it never started)."""

    def client_env(self) -> dict[str, str]:
        """Variables by which clients find this server, under the names the SDKs and backends read;
        a store row picks the ones its backend needs (``StoreRow.environment``)."""
        return {}

    # -- supervision ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self.ports:
            raise RuntimeError(f"{self.label} is not started")
        return self.ports[self.port_names[0]]

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the client-facing port."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the server wrote since its latest start."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_start)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        """The first and last lines the server wrote since its latest start."""
        return _tail(self.log_path, lines, self._log_start)

    def start(self) -> Self:
        """Start the server and wait until it serves real requests; raise ``ServerStartError`` if not."""
        if self.is_running():
            return self
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                chosen = _ports.reserve(len(self.port_names), self.port_offsets)
            except _ports.NoFreePortsError as exc:
                raise self._error(str(exc)) from None
            self.ports = dict(zip(self.port_names, chosen, strict=True))
            try:
                self.prepare()
                self._launch()
                self._wait_ready()
            except _PortClash:
                self._terminate(timeout=5.0)
                if attempt == attempts:
                    raise self._error(f"its ports were taken {attempts} times", with_log=True) from None
                continue
            except BaseException:
                self._terminate(timeout=5.0)
                raise
            finally:
                _ports.release(chosen, self.port_offsets)
            self.startup_seconds = time.monotonic() - began
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Safe to call twice, or before start."""
        began = time.monotonic()
        self._terminate(timeout)
        self.stop_seconds = time.monotonic() - began

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.endpoint} pid={self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {state} dir={self.data_dir}>"

    def _error(self, reason: str, *, with_log: bool = False) -> ServerStartError:
        tail = self.log_tail() if with_log else ""
        return ServerStartError(self.label, reason, tail, self.log_path, self.install_hint)

    def _launch(self) -> None:
        env = dict(os.environ)
        for key, value in self.environment().items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        command = self.command()
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()
        self._log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.label}\n".encode())
        self._log.flush()
        try:
            # A new session keeps a terminal's Ctrl-C away from the server, so stop() shuts it down
            # in order, and gives it a process group the watchdog can kill as a whole.
            self._proc = subprocess.Popen(
                command,
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise ServerNotInstalledError(
                self.label, f"cannot execute {command[0]}: {exc}", hint=self.install_hint
            ) from exc
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG_CODE, str(self._proc.pid), str(_WATCHDOG_GRACE_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                if any(marker in self.log_tail().lower() for marker in self.port_clash_markers):
                    raise _PortClash()
                raise self._error(f"exited with code {code}", with_log=True)
            try:
                self.ready()
            except Exception as exc:
                last_error = exc
            else:
                # A server that lost a port race may answer from the other process's socket for a
                # moment before it exits: make sure ours is still alive.
                if self._proc.poll() is None:
                    return
                continue
            if time.monotonic() > deadline:
                reason = f"not ready after {self.startup_timeout:.0f} s (last check: {last_error!r})"
                raise self._error(reason, with_log=True)
            time.sleep(0.1)

    def _terminate(self, timeout: float) -> None:
        proc = self._proc
        # Signal the group only while the leader is unreaped: until wait() returns, its pid (and so
        # its group id) cannot be reused by an unrelated process.
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._dismiss_watchdog()
        self._close_log()
        self.cleanup()
        with _live_lock:
            _live.discard(self)

    def _dismiss_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError):
            assert watchdog.stdin is not None
            watchdog.stdin.write(b"q")
            watchdog.stdin.close()
        try:
            watchdog.wait(5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()
