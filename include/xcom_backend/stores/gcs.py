"""Google Cloud Storage through the Google provider's GCSHook."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from include.xcom_backend.download import Download
from include.xcom_backend.settings import OPTIONS, parsed
from include.xcom_backend.stores.base import ConnectedStore, Failure, StoredObject
from include.xcom_backend.upload import EncoderFailed

if TYPE_CHECKING:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from google.cloud.storage import Blob

# A Cloud KMS key, not one of its versions: GCS encrypts new objects with the key's primary version.
_KMS_KEY = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+")


def _kms_key_name(text: str) -> str | None:
    if not _KMS_KEY.fullmatch(text):
        raise ValueError(text)
    return text


class GCSStore(ConnectedStore["GCSHook"]):
    scheme = "gcs"
    # A resumable upload's chunks go one after the other, a round trip each: the client library's
    # own default chunk of its file writer (google.cloud.storage.fileio), not the 8 MiB parts that
    # multipart stores upload several at a time.
    part_size = 40 * 1024 * 1024

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

    def _blob(self, key: str, kms_key_name: str | None = None) -> Blob:
        # The blob itself rather than GCSHook.upload/download, which cannot pass a retry policy.
        return self.hook.get_conn().bucket(self.bucket).blob(key, kms_key_name=kms_key_name)

    def _kms_key(self) -> str | None:
        """The customer-managed key of uploads (None when unset: the bucket's default encryption).
        Downloads need nothing: GCS decrypts with the key the object names."""
        option = OPTIONS["gcs_kms_key_name"]
        expected = "a Cloud KMS key name, projects/P/locations/L/keyRings/R/cryptoKeys/K (or empty)"
        return parsed(option, lambda text: _kms_key_name(text) if text else None, expected)

    def _check_upload_settings(self) -> None:
        self._kms_key()

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        blob = self._blob(key, self._kms_key())
        blob.metadata = metadata
        # A resumable upload at every size. Given a size of 8 MiB or less, the client sends a
        # multipart body that it builds with chained `+` over the bytes, holding two more copies of
        # them at once; a resumable upload sends the bytes themselves (a BytesIO over `bytes` hands
        # back that very object to a whole read), for one more round trip (docs/benchmarks.md).
        blob.upload_from_file(io.BytesIO(data), size=None, content_type=content_type, **self._call)

    def _put_parts(
        self, key: str, parts: Iterator[bytes], content_type: str, metadata: dict[str, str]
    ) -> None:
        # A resumable upload: chunks go one after the other (each a multiple of 256 KiB but the
        # last), and the object exists only once the last is sent. Not retried as a whole: the parts
        # are consumed as they are sent; each chunk is bounded by the policy's timeouts.
        blob = self._blob(key, self._kms_key())
        blob.metadata = metadata or None
        try:
            with blob.open(
                "wb", chunk_size=self.part_size, content_type=content_type, ignore_flush=True, **self._call
            ) as writer:
                for part in parts:
                    writer.write(part)
        except EncoderFailed:
            raise
        except Exception as exc:
            self._fail(exc, key, writing=True)

    def _get(self, key: str) -> bytes:
        return bytes(self._blob(key).download_as_bytes(**self._call))

    def _get_into(self, key: str, sink: Download) -> None:
        # The client writes the body into the sink as it arrives (and checks its crc32c/md5).
        self._blob(key).download_to_file(sink, **self._call)

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
        # ChunkedEncodingError: a body that broke off part way.
        broken = requests.exceptions.ChunkedEncodingError
        if isinstance(exc, requests.ConnectionError | requests.Timeout | transport | broken):
            return "unreachable"
        return None
