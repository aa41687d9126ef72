"""MinIO (or any S3 API server) through the minio SDK, configured like the tutorial: MINIO_* variables."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from include.xcom_backend.download import READ_BYTES, Download
from include.xcom_backend.registry import row
from include.xcom_backend.settings import OPTIONS, env, value
from include.xcom_backend.stores.base import Failure, LazyClient, ObjectStore, StoredObject
from include.xcom_backend.stores.s3 import sse_setting
from include.xcom_backend.upload import upload_parts

if TYPE_CHECKING:
    from minio import Minio
    from minio.datatypes import Part
    from minio.sse import Sse

_NOT_FOUND = {"NoSuchKey", "NoSuchObject"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


class MinIOStore(ObjectStore):
    scheme = "minio"

    def __init__(self, bucket: str, endpoint: str, secure: bool) -> None:
        super().__init__(bucket, "MINIO_ACCESS_KEY/MINIO_SECRET_KEY")
        self._endpoint = endpoint
        self.secure = secure
        self._client: LazyClient[Minio] = LazyClient()

    @classmethod
    def configured(cls, bucket: str | None = None) -> MinIOStore:
        endpoint = os.environ.get("MINIO_IP", "").strip()
        if not endpoint:
            raise ValueError("MINIO_IP is not set: give the MinIO (S3 API) server as host:port, e.g. in .env")
        secure = env("MINIO_SECURE", "false").lower() in ("1", "true", "yes")
        return cls.shared(bucket or value(row(cls.scheme).bucket_option), endpoint, secure)

    @property
    def client(self) -> Minio:
        def build() -> Minio:
            import urllib3
            from minio import Minio

            # The SDK's default pool holds 10 connections, waits 300 s for an answer and retries;
            # size the pool for threaded pushes, take the policy's timeouts and leave retrying to
            # stores/base.py.
            http = urllib3.PoolManager(
                maxsize=32,
                timeout=urllib3.Timeout(connect=self.policy.connect_timeout, read=self.policy.read_timeout),
                retries=False,
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

    def _sse(self) -> Sse | None:
        """The upload's server-side encryption (None when unset); GETs need none for SSE-S3/KMS."""
        # The SDK's SseKMS always sends a key id header, so aws:kms needs one.
        mode, key_id = sse_setting(OPTIONS["minio_sse"], OPTIONS["minio_sse_kms_key_id"], key_required=True)
        if mode is None:
            return None
        from minio.sse import SseKMS, SseS3

        return SseKMS(key_id, {}) if mode == "aws:kms" else SseS3()

    def _check_upload_settings(self) -> None:
        self._sse()

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        headers: dict[str, str | list[str] | tuple[str]] = dict(metadata)
        self.client.put_object(
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata=headers,
            sse=self._sse(),
        )

    def _put_parts(
        self, key: str, parts: Iterator[bytes], content_type: str, metadata: dict[str, str]
    ) -> None:
        upload_parts(self, self, key, parts, content_type, metadata)

    # The multipart protocol (upload.py), through the SDK's own multipart calls: its put_object
    # streams too, but as one call, which could not retry a part under the policy.
    def _begin_parts(self, key: str, content_type: str, metadata: dict[str, str]) -> str:
        from minio.helpers import genheaders

        headers = genheaders(dict(metadata), self._sse(), None, None, False)
        headers["Content-Type"] = content_type
        return str(self.client._create_multipart_upload(self.bucket, key, headers))

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes) -> Part:
        from minio.datatypes import Part

        return Part(number, self.client._upload_part(self.bucket, key, data, None, upload_id, number))

    def _finish_parts(
        self, key: str, upload_id: str, done: list[Part], content_type: str, metadata: dict[str, str]
    ) -> None:
        self.client._complete_multipart_upload(self.bucket, key, upload_id, done)

    def _abort_parts(self, key: str, upload_id: str) -> None:
        self.client._abort_multipart_upload(self.bucket, key, upload_id)

    def _get(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _get_into(self, key: str, sink: Download) -> None:
        response = self.client.get_object(self.bucket, key)
        try:
            length = response.headers.get("Content-Length")
            if length is not None:
                sink.expect(int(length))
            for chunk in response.stream(READ_BYTES):
                sink.write(chunk)
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
        from minio.error import S3Error, ServerError

        if isinstance(exc, ServerError):
            return "busy"
        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND:
                return "not_found"
            if exc.code in _NO_BUCKET:
                return "no_bucket"
            if exc.code in _DENIED:
                return "denied"
            if exc.code in _BUSY:
                return "busy"
            return None
        if isinstance(exc, urllib3.exceptions.MaxRetryError | urllib3.exceptions.NewConnectionError):
            return "unreachable"
        if isinstance(
            exc, urllib3.exceptions.TimeoutError | urllib3.exceptions.ProtocolError | ConnectionError
        ):
            return "unreachable"
        return None
