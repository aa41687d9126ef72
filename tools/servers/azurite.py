"""Azurite: Microsoft's Azure Blob Storage emulator (Node.js, installed into node_modules by ``npm ci``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.servers.ports import HOST
from tools.servers.supervisor import Server, ServerNotInstalledError

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

# Azurite's built-in development account. The key is published in Microsoft's documentation, so
# having it in code discloses nothing.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
_INSTALL_HINT = (
    "Install it with `make setup` (Azurite into node_modules via `npm ci`, which needs Node.js 20)."
)


def _find_azurite() -> list[str]:
    local = _NODE_MODULES / ".bin" / "azurite-blob"
    if local.exists():
        node = shutil.which("node")
        if node is None:
            raise ServerNotInstalledError(
                Azurite.label, "Node.js (`node`) is not on PATH", hint=_INSTALL_HINT
            )
        # Run the script through node explicitly: its `#!/usr/bin/env node` line fails with a
        # confusing message when PATH differs.
        return [node, str(local.resolve())]
    found = shutil.which("azurite-blob")
    if found:
        return [found]
    raise ServerNotInstalledError(
        Azurite.label,
        f"`azurite-blob` is neither in {local.parent} (run `npm ci`) nor on PATH",
        hint=_INSTALL_HINT,
    )


class Azurite(Server):
    """Azurite's Blob service with the well-known development account ``devstoreaccount1``."""

    name = "azurite"
    label = "Azurite"
    install_hint = _INSTALL_HINT
    account_name = ACCOUNT
    account_key = ACCOUNT_KEY

    def prepare(self) -> None:
        (self.data_dir / "data").mkdir(exist_ok=True)

    def command(self) -> list[str]:
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

    def environment(self) -> dict[str, str | None]:
        # AZURITE_ACCOUNTS would replace the well-known account and key.
        return {"AZURITE_ACCOUNTS": None}

    def ready(self) -> None:
        next(iter(self.client(timeout=2.0).list_containers(results_per_page=1)), None)

    # -- clients ----------------------------------------------------------------------------------

    @property
    def blob_endpoint(self) -> str:
        return f"{self.endpoint}/{self.account_name}"

    def connection_string(self, account_key: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={account_key or self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def client(self, account_key: str | None = None, timeout: float = 30.0) -> BlobServiceClient:
        """A ``BlobServiceClient`` for this server (another key, e.g. a wrong one, can be given)."""
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
