"""Amazon S3 (and any S3 API) through the Amazon provider's S3Hook."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from include.xcom_backend.download import READ_BYTES, Download
from include.xcom_backend.settings import OPTIONS, Option, parsed, value
from include.xcom_backend.stores.base import ConnectedStore, Failure, StoredObject
from include.xcom_backend.upload import upload_parts

if TYPE_CHECKING:
    from botocore.client import BaseClient as S3Client

Part = dict[str, Any]  # a finished part as complete_multipart_upload takes it
_SINGLE_PUT_LIMIT = 64 * 1024 * 1024  # above this, parallel multipart upload is faster

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"}
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "500", "503"}

# The S3 API's server-side encryption modes, by the setting's text in any case, as the API spells them.
SSE_MODES = {"aes256": "AES256", "aws:kms": "aws:kms"}
_NO_SSE = ("", "none")


def sse_setting(mode_option: Option, key_option: Option, key_required: bool) -> tuple[str | None, str]:
    """The SSE mode (None: no header, today's uploads) and KMS key id two options give; shared with
    the MinIO adapter. A bad mode, or a key id that the mode would not use, is a ValueError naming the
    option, because S3 would otherwise refuse the upload with a less clear message, or ignore the key."""

    def mode_of(text: str) -> str | None:
        if text.lower() in _NO_SSE:
            return None
        try:
            return SSE_MODES[text.lower()]
        except KeyError:
            raise ValueError(text) from None

    mode = parsed(mode_option, mode_of, f"{' or '.join(SSE_MODES.values())} (or empty for none)")
    key_id = value(key_option).strip()
    if key_id and mode != "aws:kms":
        raise ValueError(
            f"XCom backend setting {key_option.env_var} names a KMS key, which only SSE-KMS uses: "
            f"set {mode_option.env_var}=aws:kms too (it is {value(mode_option)!r})"
        )
    if key_required and mode == "aws:kms" and not key_id:
        raise ValueError(
            f"XCom backend setting {mode_option.env_var}=aws:kms needs {key_option.env_var}: the KMS key id"
        )
    return mode, key_id


def classify_s3_error(exc: BaseException) -> Failure | None:
    """Shared with the MinIO adapter: both speak the S3 API and return the same error codes."""
    import botocore.exceptions as bce

    if isinstance(exc, bce.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return "not_found"
        if code in _NO_BUCKET:
            return "no_bucket"
        if code in _DENIED:
            return "denied"
        if code in _BUSY:
            return "busy"
        return None
    if isinstance(exc, bce.HTTPClientError | bce.EndpointConnectionError | bce.ConnectTimeoutError):
        # refused, reset or timed out: no answer
        return "unreachable"
    if isinstance(exc, bce.IncompleteReadError):  # a body that broke off: a new attempt may pass
        return "unreachable"
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return "denied"
    return None


class S3Store(ConnectedStore["S3Client"]):
    scheme = "s3"
    fixed_wait = 1.0  # botocore waits 1 s for "100 Continue" before sending an upload's body

    def _connect(self) -> S3Client:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.config import Config

        hook = S3Hook(aws_conn_id=self.conn_id)
        # The connection's own botocore settings (config_kwargs) stay; botocore's retries go,
        # because stores/base.py retries with the one policy.
        policy = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.policy.connect_timeout,
            read_timeout=self.policy.read_timeout,
        )
        return hook.get_client_type(config=hook.config.merge(policy))

    @property
    def client(self) -> S3Client:
        return self.connected

    def _endpoint_url(self) -> str:
        return str(self.client.meta.endpoint_url)

    def _encryption(self) -> dict[str, str]:
        """The upload's SSE arguments (none when unset). GETs need none: S3 decrypts SSE-S3 and
        SSE-KMS objects for a caller allowed to use the key."""
        mode, key_id = sse_setting(OPTIONS["s3_sse"], OPTIONS["s3_sse_kms_key_id"], key_required=False)
        arguments = {"ServerSideEncryption": mode} if mode else {}
        if key_id:  # none with aws:kms: the account's AWS managed key (aws/s3)
            arguments["SSEKMSKeyId"] = key_id
        return arguments

    def _check_upload_settings(self) -> None:
        self._encryption()

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        encryption = self._encryption()
        if len(data) <= _SINGLE_PUT_LIMIT:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=metadata,
                **encryption,
            )
        else:
            self.client.upload_fileobj(
                io.BytesIO(data),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type, "Metadata": metadata, **encryption},
            )

    def _put_parts(
        self, key: str, parts: Iterator[bytes], content_type: str, metadata: dict[str, str]
    ) -> None:
        upload_parts(self, self, key, parts, content_type, metadata)

    # The multipart protocol (upload.py): parts stay invisible until the upload is completed.
    def _begin_parts(self, key: str, content_type: str, metadata: dict[str, str]) -> str:
        started = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type, Metadata=metadata, **self._encryption()
        )
        return str(started["UploadId"])

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes) -> Part:
        sent = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": sent["ETag"]}

    def _finish_parts(
        self, key: str, upload_id: str, done: list[Part], content_type: str, metadata: dict[str, str]
    ) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )

    def _abort_parts(self, key: str, upload_id: str) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _get_into(self, key: str, sink: Download) -> None:
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        sink.expect(int(response["ContentLength"]))
        body = response["Body"]
        try:
            for chunk in body.iter_chunks(READ_BYTES):
                sink.write(chunk)
        finally:
            body.close()

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], item["Size"], item["LastModified"])

    def _bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if classify_s3_error(exc) in ("not_found", "no_bucket"):
                return False
            raise
        return True

    def _classify(self, exc: BaseException) -> Failure | None:
        return classify_s3_error(exc)
