"""Google Cloud Storage through the Google provider's GCSHook."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from include.xcom_backend.settings import env
from include.xcom_backend.stores.base import Failure, LazyClient, ObjectStore, StoredObject


class GCSStore(ObjectStore):
    scheme = "gcs"

    def __init__(self, bucket: str, conn_id: str) -> None:
        super().__init__(bucket, f"'{conn_id}'")
        self.conn_id = conn_id
        self._hook = LazyClient()

    @classmethod
    def from_env(cls, bucket: str | None = None) -> GCSStore:
        return cls.shared(
            bucket or env("XCOM_BACKEND_GCS_BUCKET", "gcs-xcom-backend-example"),
            env("XCOM_BACKEND_GCS_CONN_ID", "gcs_xcom_backend_conn"),
        )

    @property
    def hook(self) -> Any:
        def build() -> Any:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            hook = GCSHook(gcp_conn_id=self.conn_id)
            hook.get_conn()  # the hook caches its client; build it now, under the lock
            return hook

        return self._hook.get(build)

    @property
    def endpoint(self) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self.hook.upload(self.bucket, key, data=data, mime_type=content_type, metadata=metadata)

    def _get(self, key: str) -> bytes:
        return self.hook.download(self.bucket, key)

    def _delete(self, key: str) -> None:
        self.hook.delete(self.bucket, key, ignore_error=True)

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        for blob in self.hook.get_conn().list_blobs(self.bucket, prefix=prefix):
            yield StoredObject(blob.name, blob.size or 0, blob.updated)

    def _bucket_exists(self) -> bool:
        return bool(self.hook.get_conn().bucket(self.bucket).exists())

    def _classify(self, exc: BaseException) -> Failure | None:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.NotFound):
            return "no_bucket" if "bucket does not exist" in str(exc).lower() else "not_found"
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized | google.auth.exceptions.RefreshError):
            return "denied"
        transport = google.auth.exceptions.TransportError
        if isinstance(exc, requests.ConnectionError | requests.Timeout | transport):
            return "unreachable"
        return None
