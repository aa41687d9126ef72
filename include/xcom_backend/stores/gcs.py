"""Google Cloud Storage through the Google provider's GCSHook."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from include.xcom_backend.registry import row
from include.xcom_backend.settings import value
from include.xcom_backend.stores.base import Failure, LazyClient, ObjectStore, StoredObject


def _retry() -> Any:
    """Google's retry policy for uploads and downloads, minus connection failures.

    The client retries a dead endpoint for up to 120 s per call (and then raises a RetryError the
    backend could not classify); as for Azure, a connection failure must surface at once, because
    the backend retries reads itself with short back-offs. 429 and 5xx answers are still retried.
    """
    import requests
    from google.cloud.storage.retry import DEFAULT_RETRY

    policy = DEFAULT_RETRY._predicate

    def predicate(exc: BaseException) -> bool:
        return not isinstance(exc, ConnectionError | requests.ConnectionError) and policy(exc)

    return DEFAULT_RETRY.with_predicate(predicate)


class GCSStore(ObjectStore):
    scheme = "gcs"

    def __init__(self, bucket: str, conn_id: str) -> None:
        super().__init__(bucket, f"'{conn_id}'")
        self.conn_id = conn_id
        self._hook = LazyClient()

    @classmethod
    def configured(cls, bucket: str | None = None) -> GCSStore:
        options = row(cls.scheme).options
        return cls.shared(bucket or value(options["bucket"]), value(options["conn_id"]))

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
        # The blob itself rather than GCSHook.upload/download, which cannot pass a retry policy.
        blob = self.hook.get_conn().bucket(self.bucket).blob(key)
        blob.metadata = metadata
        blob.upload_from_string(data, content_type=content_type, retry=_retry())

    def _get(self, key: str) -> bytes:
        return self.hook.get_conn().bucket(self.bucket).blob(key).download_as_bytes(retry=_retry())

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

        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            return self._classify(exc.cause)  # retries ran out: what failed is the last attempt
        if isinstance(exc, gexc.NotFound):
            return "no_bucket" if "bucket does not exist" in str(exc).lower() else "not_found"
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized | google.auth.exceptions.RefreshError):
            return "denied"
        transport = google.auth.exceptions.TransportError
        if isinstance(exc, requests.ConnectionError | requests.Timeout | transport):
            return "unreachable"
        return None
