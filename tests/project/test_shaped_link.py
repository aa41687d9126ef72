"""tools/shaped_link.py: the benchmark's cloud-like link (namespace, veth, tbf, delaying proxy)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tools.shaped_link import shaped_link

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tc") is None,
    reason="the shaped link needs root and iproute2 (CI runs as root)",
)
PAYLOAD = os.urandom(3 * 1024 * 1024)
DELAY_MS = 25.0


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server on the host's loopback that sends back what it receives, then closes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                while data := conn.recv(1 << 16):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


# Runs inside the namespace: connect to the host's port as if it were local, time the first echo of a
# byte, then send the payload and read it all back.
CLIENT = """
import hashlib, socket, sys, time
port, size = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
    started = time.monotonic(); s.sendall(b"x"); s.recv(1); rtt = time.monotonic() - started
    payload = sys.stdin.buffer.read(); s.sendall(payload); s.shutdown(socket.SHUT_WR)
    back = bytearray()
    while chunk := s.recv(1 << 16):
        back += chunk
print(rtt, len(back) + 1, hashlib.sha256(bytes(back)).hexdigest())
"""


def test_bytes_cross_the_link_intact_with_the_delay_each_way_and_nothing_is_left(echo_port: int) -> None:
    with shaped_link([echo_port], rate="100mbit", delay_ms=DELAY_MS) as link:
        qdiscs = link.qdiscs()
        assert qdiscs.count("tbf") == 2 and qdiscs.count("rate 100Mbit") == 2, qdiscs
        done = subprocess.run(
            link.command([sys.executable, "-c", CLIENT, str(echo_port), str(len(PAYLOAD))]),
            input=PAYLOAD,
            capture_output=True,
            timeout=120,
            check=True,
        )
        rtt, size, digest = done.stdout.decode().split()
        name, host_dev = link.name, link.host_dev
    # The delay is a floor: a byte's round trip crosses the proxy once each way.
    assert float(rtt) >= 2 * DELAY_MS / 1000, rtt
    assert (int(size), digest) == (len(PAYLOAD) + 1, hashlib.sha256(PAYLOAD).hexdigest())
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert host_dev not in links, links


def test_the_link_is_removed_when_the_run_inside_fails(echo_port: int) -> None:
    with pytest.raises(RuntimeError, match="inside"), shaped_link([echo_port]) as link:
        name = link.name
        raise RuntimeError("a failure inside the link")
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
