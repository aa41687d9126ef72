"""A TCP proxy in front of a real local server that breaks responses off part way.

Requests pass through unchanged (so signatures over the Host header still match: the client signs
for the proxy's address and the proxy forwards the bytes as they are); each response stream is
counted, and while `cuts` is above zero a connection whose responses pass `cut_after` bytes is
closed there, as a dropped connection would leave it. `cuts=None` cuts every connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class CuttingProxy:
    def __init__(self, upstream_port: int, cut_after: int, cuts: int | None = 1) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = cuts
        self.cut = 0  # connections broken off so far
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> CuttingProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()
        for sock in self._sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            with self._lock:
                self.connections += 1
                may_cut = self.cuts is None or self.cut < self.cuts
                if may_cut:
                    self.cut += 1  # counted when chosen: the next connection goes through whole
            self._spawn(self._pipe, client, upstream, None)
            self._spawn(self._pipe, upstream, client, self.cut_after if may_cut else None)

    def _pipe(self, source: socket.socket, target: socket.socket, limit: int | None) -> None:
        passed = 0
        try:
            while data := source.recv(65536):
                if limit is not None and passed + len(data) > limit:
                    target.sendall(data[: limit - passed])
                    break  # the rest never comes: both ends are closed below
                target.sendall(data)
                passed += len(data)
        except OSError:
            pass  # the other side went away: close both
        finally:
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
