"""Google Cloud Storage through the Google provider's GCSHook."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from include.xcom_backend.stores.base import ConnectedStore, Failure, StoredObject

if TYPE_CHECKING:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from google.cloud.storage import Blob


class GCSStore(ConnectedStore["GCSHook"]):
    scheme = "gcs"

    def _connect(self) -> GCSHook:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        hook = GCSHook(gcp_conn_id=self.conn_id)
        client = hook.get_conn()  # the hook caches its client; build it now, under the lock
        # The client fetches each bucket's metadata in a background thread, for tracing attributes
        # only, with retries of its own (up to 120 s against a dead store) and again after every
        # failure; calls work the same without it.
        if getattr(client, "_bucket_metadata_cache", None) is not None:
            client._bucket_metadata_cache = None
        return hook

    @property
    def hook(self) -> GCSHook:
        return self.connected

    def _endpoint_url(self) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"

    @property
    def _call(self) -> dict[str, Any]:
        """Every call: the client's retries off (stores/base.py retries) and the policy's timeouts."""
        return {"retry": None, "timeout": (self.policy.connect_timeout, self.policy.read_timeout)}

    def _blob(self, key: str) -> Blob:
        # The blob itself rather than GCSHook.upload/download, which cannot pass a retry policy.
        return self.hook.get_conn().bucket(self.bucket).blob(key)

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        blob = self._blob(key)
        blob.metadata = metadata
        blob.upload_from_string(data, content_type=content_type, **self._call)

    def _get(self, key: str) -> bytes:
        return bytes(self._blob(key).download_as_bytes(**self._call))

    def _delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._blob(key).delete(**self._call)
        except NotFound as exc:
            if "bucket does not exist" in str(exc).lower():
                raise

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        for blob in self.hook.get_conn().list_blobs(self.bucket, prefix=prefix, **self._call):
            yield StoredObject(blob.name, blob.size or 0, blob.updated)

    def _bucket_exists(self) -> bool:
        return bool(self.hook.get_conn().bucket(self.bucket).exists(**self._call))

    def _classify(self, exc: BaseException) -> Failure | None:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            return self._classify(exc.cause)  # retries ran out: what failed is the last attempt
        if isinstance(exc, gexc.NotFound):
            return "no_bucket" if "bucket does not exist" in str(exc).lower() else "not_found"
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized | google.auth.exceptions.RefreshError):
            return "denied"
        if isinstance(exc, gexc.TooManyRequests | gexc.ServerError):
            return "busy"
        transport = google.auth.exceptions.TransportError
        if isinstance(exc, requests.ConnectionError | requests.Timeout | transport):
            return "unreachable"
        return None
