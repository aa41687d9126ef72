"""A set of local servers started together, and what joins them to the store table.

``LocalServers`` starts the servers the store table's rows name (``StoreRow.server``), or the ones
given, in parallel. For a row whose server runs here it builds the environment the row's backend
reads (its Airflow connection, and the plain variables the row lists in ``environment``) and
creates or removes its buckets, all from the row: no store is named in this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, cast, runtime_checkable
from unittest import mock

from include.xcom_backend.registry import TABLE, StoreRow, row
from tools.servers.registry import server_class
from tools.servers.supervisor import Server, ServerNotInstalledError, ServerStartError, stop_all

if TYPE_CHECKING:
    from tools.servers.azurite import Azurite
    from tools.servers.fake_gcs import FakeGCS
    from tools.servers.seaweedfs import SeaweedFS


@runtime_checkable
class StoreServer(Protocol):
    """What a server that serves an object store offers, beside what every server has."""

    label: str

    def client_env(self) -> dict[str, str]: ...

    def airflow_connection(self) -> dict[str, Any]: ...

    def create_bucket(self, name: str) -> None: ...

    def delete_bucket_recursive(self, name: str) -> None: ...


def unique_bucket_name(prefix: str = "t") -> str:
    """A fresh name valid as an S3 bucket, a GCS bucket and an Azure container (``t-1a2b3c4d5e6f``)."""
    if not (prefix[:1].isalpha() and prefix.islower() and all(c.isalnum() or c == "-" for c in prefix)):
        raise ValueError(f"bucket prefix must be lowercase letters, digits and hyphens: {prefix!r}")
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    if len(name) > 63 or "--" in name:
        raise ValueError(f"bucket prefix {prefix!r} gives an invalid name {name!r}")
    return name


def connection_env_var(conn_id: str) -> str:
    """The variable Airflow reads a connection from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def store_servers() -> list[str]:
    """The servers the store table names, each once, in the table's order."""
    return list(dict.fromkeys(r.server for r in TABLE.values() if r.server))


class LocalServers:
    """Local servers started in parallel, by default every one the store table names.

    ``base_dir`` holds one sub-directory per server; without it a temporary directory is made and
    removed again by ``stop()``.
    """

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        names: Iterable[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="local-servers-"))
        self.servers: dict[str, Server] = {
            name: server_class(name)(self.base_dir / name, startup_timeout=startup_timeout)
            for name in (store_servers() if names is None else names)
        }
        self.startup_seconds: float | None = None
        self.stop_seconds: float | None = None

    def __getitem__(self, name: str) -> Server:
        try:
            return self.servers[name]
        except KeyError:
            raise ValueError(
                f"no local server {name!r} in this set; it has {', '.join(self.servers)}"
            ) from None

    # Typed shortcuts for the tests, which use these servers' own clients.
    @property
    def seaweedfs(self) -> SeaweedFS:
        return cast("SeaweedFS", self["seaweedfs"])

    @property
    def azurite(self) -> Azurite:
        return cast("Azurite", self["azurite"])

    @property
    def fake_gcs(self) -> FakeGCS:
        return cast("FakeGCS", self["fake-gcs"])

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start them all; if any fails, stop the others and raise one error naming every failure."""
        began = time.monotonic()
        servers = list(self.servers.values())
        with ThreadPoolExecutor(max(len(servers), 1)) as pool:
            futures = [pool.submit(server.start) for server in servers]
        errors = [error for f in futures if isinstance(error := f.exception(), ServerStartError)]
        others = [error for f in futures if (error := f.exception()) is not None and error not in errors]
        if errors or others:
            self.stop()
            if others:
                raise others[0]
            if len(errors) == 1:
                raise errors[0]
            cls = ServerStartError
            if all(isinstance(e, ServerNotInstalledError) for e in errors):
                cls = ServerNotInstalledError
            reasons = "\n\n".join(str(e) for e in errors)
            count = f"{len(errors)} of {len(servers)} servers failed"
            raise cls("local servers", f"{count}:\n\n{reasons}\n") from errors[0]
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every server (in parallel); safe to call twice, or after a failed start."""
        began = time.monotonic()
        stop_all(list(self.servers.values()), timeout)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        self.stop_seconds = time.monotonic() - began

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- stores on these servers ------------------------------------------------------------------

    def rows(self) -> list[StoreRow]:
        """The store table's rows whose server is in this set."""
        return [r for r in TABLE.values() if r.server in self.servers]

    def server_for(self, scheme: str) -> StoreServer:
        """The server behind store ``scheme`` (a table row's ``server``)."""
        store = row(scheme)
        if store.server is None:
            raise ValueError(f"XCom store {scheme!r} needs no local server")
        server = self[store.server]
        if not isinstance(server, StoreServer):
            raise TypeError(f"XCom store {scheme!r} names server {store.server!r}, which serves no buckets")
        return server

    def store_env(self, scheme: str) -> dict[str, str]:
        """What the backend of ``scheme`` reads to reach its server here.

        The row's ``conn_id`` option (its default name) gets the server's Airflow connection; each
        plain variable the row lists is taken from the server's ``client_env()``.
        """
        store, server = row(scheme), self.server_for(scheme)
        values: dict[str, str] = {}
        conn_id = store.options.get("conn_id")
        if conn_id is not None:
            values[connection_env_var(conn_id.default)] = json.dumps(server.airflow_connection())
        offered = server.client_env()
        missing = [name for name in store.environment if name not in offered]
        if missing:
            raise ValueError(f"{server.label} offers no {', '.join(missing)} for XCom store {scheme!r}")
        values.update({name: offered[name] for name in store.environment})
        return values

    def env(self) -> dict[str, str]:
        """Environment variables that point every store's backend at its server here."""
        values: dict[str, str] = {}
        for store in self.rows():
            values.update(self.store_env(store.scheme))
        return values

    @contextlib.contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """``env()`` in ``os.environ`` for the block; the environment is restored afterwards."""
        values = self.env()
        with mock.patch.dict(os.environ, values):
            yield values

    def create_bucket(self, scheme: str, name: str) -> None:
        self.server_for(scheme).create_bucket(name)

    def delete_bucket_recursive(self, scheme: str, name: str) -> None:
        self.server_for(scheme).delete_bucket_recursive(name)

    def create_default_buckets(self) -> None:
        """Each store's default bucket (the example DAGs use them), once per server."""
        done: set[tuple[str | None, str]] = set()
        for store in self.rows():
            if (store.server, store.default_bucket) not in done:
                self.create_bucket(store.scheme, store.default_bucket)
                done.add((store.server, store.default_bucket))
