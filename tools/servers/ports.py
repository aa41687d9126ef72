"""Free TCP ports on the loopback interface; servers started in parallel are never given the same one."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

HOST = "127.0.0.1"

# No server may be given a port whose companion (port + offset) would pass 65535.
_MAX_PORT = 65535

_lock = threading.Lock()
# Ports handed to servers of this process that may not have bound them yet: without this, two
# servers starting in parallel threads could both be given the same "free" port.
_reserved: set[int] = set()
_rng = random.SystemRandom()


class NoFreePortsError(RuntimeError):
    """Not enough free ports were found on the loopback interface."""


def _port_range(offsets: tuple[int, ...]) -> tuple[int, int]:
    # Staying below the kernel's ephemeral range keeps outgoing connections (which the tests make
    # thousands of) from occupying a port between our check and the server's bind.
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    widest = max(offsets, default=0)
    top = min(low, _MAX_PORT + 1 - widest) - widest
    if top - 10000 >= 2000:
        return 10000, top
    return 10000, _MAX_PORT + 1 - widest


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port held only by TIME_WAIT connections is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def reserve(count: int, offsets: tuple[int, ...] = ()) -> list[int]:
    """Reserve ``count`` distinct free ports; for each port ``p`` every ``p + offset`` is free too.

    The ports stay reserved in this process until ``release`` is called with the same arguments.
    """
    low, high = _port_range(offsets)
    chosen: list[int] = []
    taken: set[int] = set()
    with _lock:
        for _ in range(2000):
            port = _rng.randrange(low, high)
            needed = [port, *(port + offset for offset in offsets)]
            if any(p in _reserved or p in taken for p in needed):
                continue
            if all(_is_free(p) for p in needed):
                chosen.append(port)
                taken.update(needed)
                if len(chosen) == count:
                    _reserved.update(taken)
                    return chosen
    raise NoFreePortsError(f"found no {count} free ports in {low}-{high} on {HOST}")


def release(ports: Iterable[int], offsets: tuple[int, ...] = ()) -> None:
    """Forget a reservation once the server has bound its ports (or given up)."""
    with _lock:
        for port in ports:
            _reserved.discard(port)
            for offset in offsets:
                _reserved.discard(port + offset)
