"""MinIO (or any S3 API server) through the minio SDK, configured like the tutorial: MINIO_* variables."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

from include.xcom_backend.registry import row
from include.xcom_backend.settings import env, value
from include.xcom_backend.stores.base import Failure, LazyClient, ObjectStore, StoredObject

_NOT_FOUND = {"NoSuchKey", "NoSuchObject"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


class MinIOStore(ObjectStore):
    scheme = "minio"

    def __init__(self, bucket: str, endpoint: str, secure: bool) -> None:
        super().__init__(bucket, "MINIO_ACCESS_KEY/MINIO_SECRET_KEY")
        self._endpoint = endpoint
        self.secure = secure
        self._client = LazyClient()

    @classmethod
    def configured(cls, bucket: str | None = None) -> MinIOStore:
        endpoint = os.environ.get("MINIO_IP", "").strip()
        if not endpoint:
            raise ValueError("MINIO_IP is not set: give the MinIO (S3 API) server as host:port, e.g. in .env")
        secure = env("MINIO_SECURE", "false").lower() in ("1", "true", "yes")
        return cls.shared(bucket or value(row(cls.scheme).bucket_option), endpoint, secure)

    @property
    def client(self) -> Any:
        def build() -> Any:
            import urllib3
            from minio import Minio

            # The SDK's default pool holds 10 connections and retries a dead endpoint for minutes;
            # size the pool for threaded pushes and fail within seconds so errors surface.
            http = urllib3.PoolManager(
                maxsize=32,
                timeout=urllib3.Timeout(connect=10, read=300),
                retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            )
            # Credentials are read here, when the client is built, and live only inside it.
            return Minio(
                self._endpoint,
                access_key=os.environ.get("MINIO_ACCESS_KEY"),
                secret_key=os.environ.get("MINIO_SECRET_KEY"),
                secure=self.secure,
                http_client=http,
            )

        return self._client.get(build)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self._endpoint}"

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type, metadata=metadata
        )

    def _get(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            yield StoredObject(item.object_name, item.size or 0, item.last_modified)

    def _bucket_exists(self) -> bool:
        return bool(self.client.bucket_exists(self.bucket))

    def _classify(self, exc: BaseException) -> Failure | None:
        import urllib3.exceptions
        from minio.error import S3Error

        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND:
                return "not_found"
            if exc.code in _NO_BUCKET:
                return "no_bucket"
            if exc.code in _DENIED:
                return "denied"
            return None
        if isinstance(exc, urllib3.exceptions.MaxRetryError | urllib3.exceptions.NewConnectionError):
            return "unreachable"
        if isinstance(exc, urllib3.exceptions.TimeoutError | ConnectionError):
            return "unreachable"
        return None
