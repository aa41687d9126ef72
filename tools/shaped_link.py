"""A cloud-like link between a client and the local stores: a network namespace behind a veth pair,
bandwidth-limited with `tbf`, and a one-way delay added by a TCP proxy.

The stores keep running on the host's loopback. Inside the namespace, a forwarder listens on the same
127.0.0.1 ports and sends every connection over the veth pair to the host, where a delaying proxy hands
it to the store. A client started with `link.command(...)` therefore uses the stores' usual endpoints
(and the URLs the servers hand out, such as fake-gcs-server's resumable upload location), while every
byte crosses the shaped link twice-delayed (once each way):

    client (namespace) -> 127.0.0.1:P forwarder -> veth, tbf both ways -> host proxy, +delay -> store

`netem` is missing on these kernels, hence the proxy for latency. Needs root (`ip netns`, `tc`).
Everything the link creates is removed when the context ends, and names carry the creating pid so
that two runs never meet.

    python -m tools.shaped_link forward --listen 127.0.0.1:8333 --to 10.213.7.1:40111   # used internally
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

CHUNK = 256 * 1024
# Chunks in flight per direction: bounds the proxy's memory and keeps the sender's backpressure,
# while leaving room for rate x delay (1 Gbit/s x 10 ms = 1.25 MB) so the delay does not cap throughput.
QUEUE_CHUNKS = 32
READY = "forwarding"
START_TIMEOUT_S = 20.0


class LinkError(RuntimeError):
    """The link could not be set up (not root, no iproute2, a command refused); says which step."""


def _run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as error:
        raise LinkError(f"{command[0]} is not installed (Debian: iproute2): {error}") from error
    if done.returncode != 0:
        raise LinkError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy one direction, each chunk delivered `delay_s` after it arrived (pipelined, not serial)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

    async def receive() -> None:
        while chunk := await reader.read(CHUNK):
            await queue.put((time.monotonic() + delay_s, chunk))
        await queue.put((time.monotonic() + delay_s, b""))

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    try:
        await asyncio.gather(receive(), deliver())
    except (ConnectionError, OSError):
        writer.transport.abort()


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay_s: float) -> asyncio.Server:
    # asyncio's streams drop their reference to a connection's task once the client side is lost,
    # and the loop holds tasks weakly: without this set, a connection still pumping the other way
    # would be garbage-collected mid-copy ("Task was destroyed but it is pending").
    connections: set[asyncio.Task[None]] = set()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        task.add_done_callback(connections.discard)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.transport.abort()
            return
        try:
            await asyncio.gather(
                _pump(client_reader, upstream_writer, delay_s),
                _pump(upstream_reader, client_writer, delay_s),
            )
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    return await asyncio.start_server(handle, *listen, reuse_address=True)


@dataclass
class DelayProxy:
    """A TCP proxy in a thread of this process: `listen_host`:port -> `target`, each way +`delay_s`."""

    listen_host: str
    target: tuple[str, int]
    delay_s: float
    port: int = 0
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> DelayProxy:
        started = threading.Event()
        holder: list[asyncio.Server] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                _serve((self.listen_host, self.port), self.target, self.delay_s)
            )
            holder.append(server)
            started.set()
            self._loop.run_forever()
            server.close()
            # Open connections end with the proxy: cancel their pumps rather than leave them pending.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"delay-proxy-{self.target[1]}", daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT_S):
            raise LinkError(f"delay proxy for {self.target} did not start in {START_TIMEOUT_S:.0f} s")
        self.port = holder[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None


@dataclass
class ShapedLink:
    """A namespace `name` joined to the host by a veth pair shaped with tbf at `rate` both ways."""

    rate: str = "1gbit"
    delay_ms: float = 5.0
    name: str = field(default_factory=lambda: f"xcb{os.getpid()}")
    host_ip: str = ""
    ns_ip: str = ""
    _proxies: list[DelayProxy] = field(default_factory=list, repr=False)
    _forwarders: list[subprocess.Popen[str]] = field(default_factory=list, repr=False)

    @property
    def host_dev(self) -> str:
        return f"{self.name}h"[:15]

    @property
    def ns_dev(self) -> str:
        return f"{self.name}n"[:15]

    def describe(self) -> str:
        return (
            f"veth {self.host_dev}<->{self.ns_dev} (namespace {self.name}), tbf {self.rate} each way, "
            f"+{self.delay_ms:g} ms each way through a TCP proxy"
        )

    def create(self) -> ShapedLink:
        if shutil.which("ip") is None or shutil.which("tc") is None:
            raise LinkError(
                "the shaped link needs iproute2's `ip` and `tc` (Debian: apt-get install iproute2)"
            )
        if os.geteuid() != 0:
            raise LinkError("the shaped link needs root (network namespaces and tc)")
        subnet = 1 + os.getpid() % 250
        self.host_ip, self.ns_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        self.destroy()  # what a killed run with the same pid may have left
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev)
        _run("ip", "link", "set", self.ns_dev, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
        _run("ip", "link", "set", self.host_dev, "up")
        inside = ("ip", "netns", "exec", self.name)
        _run(*inside, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_dev)
        _run(*inside, "ip", "link", "set", self.ns_dev, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        # tbf shapes what leaves a device: one on each end shapes both directions.
        shaping = ("root", "tbf", "rate", self.rate, "burst", "128kb", "latency", "50ms")
        _run("tc", "qdisc", "add", "dev", self.host_dev, *shaping)
        _run(*inside, "tc", "qdisc", "add", "dev", self.ns_dev, *shaping)
        return self

    def route(self, port: int) -> None:
        """Make 127.0.0.1:`port` inside the namespace reach 127.0.0.1:`port` on the host, via the link."""
        proxy = DelayProxy(self.host_ip, ("127.0.0.1", port), self.delay_ms / 1000).start()
        self._proxies.append(proxy)
        forwarder = subprocess.Popen(
            [
                *self.prefix(),
                sys.executable,
                "-m",
                "tools.shaped_link",
                "forward",
                "--listen",
                f"127.0.0.1:{port}",
                "--to",
                f"{self.host_ip}:{proxy.port}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self._forwarders.append(forwarder)
        assert forwarder.stdout is not None
        line = forwarder.stdout.readline()
        if READY not in line:
            raise LinkError(f"the forwarder for port {port} in {self.name} did not start: {line!r}")

    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def command(self, argv: Sequence[str]) -> list[str]:
        return [*self.prefix(), *argv]

    def qdiscs(self) -> str:
        """tc's view of both ends, for the report."""
        inside = _run(*self.prefix(), "tc", "qdisc", "show", "dev", self.ns_dev)
        return _run("tc", "qdisc", "show", "dev", self.host_dev) + inside

    def destroy(self) -> None:
        for forwarder in self._forwarders:
            forwarder.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                forwarder.wait(10)
            if forwarder.poll() is None:
                forwarder.kill()
                forwarder.wait(10)
        self._forwarders.clear()
        for proxy in self._proxies:
            proxy.stop()
        self._proxies.clear()
        # Deleting the namespace deletes its end of the pair, and with it the host's end.
        subprocess.run(("ip", "netns", "del", self.name), capture_output=True, check=False, timeout=30)
        subprocess.run(("ip", "link", "del", self.host_dev), capture_output=True, check=False, timeout=30)

    def exists(self) -> bool:
        names = subprocess.run(("ip", "netns", "list"), capture_output=True, text=True, check=False).stdout
        return any(line.split()[0] == self.name for line in names.splitlines() if line.strip())


@contextlib.contextmanager
def shaped_link(ports: Sequence[int], rate: str = "1gbit", delay_ms: float = 5.0) -> Iterator[ShapedLink]:
    """A ShapedLink routing each of `ports`; removed on exit, whatever happened inside."""
    link = ShapedLink(rate=rate, delay_ms=delay_ms)
    try:
        link.create()
        for port in ports:
            link.route(port)
        yield link
    finally:
        link.destroy()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The forwarder that runs inside the link's namespace.")
    sub = parser.add_subparsers(dest="command", required=True)
    forward = sub.add_parser("forward", help="listen on an address and copy every connection to another")
    forward.add_argument("--listen", type=_address, required=True)
    forward.add_argument("--to", type=_address, required=True)
    forward.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = await _serve(args.listen, args.to, args.delay_ms / 1000)
        print(f"{READY} {args.listen} -> {args.to}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
