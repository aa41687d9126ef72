"""Endpoints that fail: a port that refuses connections, and a socket that accepts and never answers;
and the variables that point one store's backend at such an endpoint."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from tools.servers import LocalServers
from tools.servers.azurite import ACCOUNT as AZURITE_ACCOUNT
from tools.servers.azurite import ACCOUNT_KEY as AZURITE_KEY


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound but never listening, so nothing else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class HungEndpoint:
    """A TCP server on 127.0.0.1 that accepts every connection, reads what is sent and never answers:
    a store that hangs. `accepted` counts the connections, i.e. the SDK's attempts."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self.accepted = 0
        self.first_accepted: float | None = None  # time.monotonic() of the first connection
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"hung-endpoint-{self.port}", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(False)
            self._connections.append(conn)
            self.accepted += 1
            if self.first_accepted is None:
                self.first_accepted = time.monotonic()
        # Drain nothing: the request bytes stay in the kernel buffers, unanswered.

    def __enter__(self) -> HungEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._connections:
            conn.close()
        self._server.close()


class Connects:
    """The connections tried to one port: how many, and when (time.monotonic())."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @property
    def count(self) -> int:
        return len(self.times)


@contextlib.contextmanager
def counting_connects(port: int) -> Iterator[Connects]:
    """Count the TCP connections the SDKs try to open to ``port`` on 127.0.0.1.

    All four SDKs open their connections through urllib3 (botocore and minio directly, the Google
    and Azure clients through requests), so this counts the attempts at the transport, under every
    retry loop, including connections that are refused."""
    import urllib3.util.connection as connection

    real = connection.create_connection
    connects = Connects()

    def counted(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if address[1] == port:
            connects.times.append(time.monotonic())  # list.append is atomic under the GIL
        return real(address, *args, **kwargs)

    setattr(connection, "create_connection", counted)  # noqa: B010 - the module attribute urllib3 calls
    try:
        yield connects
    finally:
        setattr(connection, "create_connection", real)  # noqa: B010


def failing_endpoint_env(scheme: str, port: int, local_stores: LocalServers) -> dict[str, str]:
    """The variables that point one store's backend at ``port`` with otherwise valid settings."""
    url = f"http://127.0.0.1:{port}"
    if scheme == "s3":
        conn = local_stores.seaweedfs.airflow_connection()
        conn["extra"] = {**conn["extra"], "endpoint_url": url}
        return {"AIRFLOW_CONN_S3_XCOM_BACKEND_CONN": json.dumps(conn)}
    if scheme == "minio":
        return {"MINIO_IP": f"127.0.0.1:{port}"}
    if scheme == "wasb":
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={url}/{AZURITE_ACCOUNT};"
        )
        conn = {"conn_type": "wasb", "extra": {"connection_string": connection_string}}
        return {"AIRFLOW_CONN_AZURE_XCOM_BACKEND_CONN": json.dumps(conn)}
    if scheme == "gcs":
        return {"STORAGE_EMULATOR_HOST": url}
    raise ValueError(f"no endpoint to point {scheme!r} at")
