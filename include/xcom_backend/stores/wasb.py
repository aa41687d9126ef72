"""Azure Blob Storage through the Microsoft Azure provider's WasbHook."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from include.xcom_backend.download import Download
from include.xcom_backend.settings import OPTIONS, value
from include.xcom_backend.stores.base import ConnectedStore, Failure, StoredObject
from include.xcom_backend.upload import upload_parts

if TYPE_CHECKING:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    from azure.storage.blob import BlobClient, ContainerClient


# A streamed download's GETs: a first one that is the whole of most small blobs, then ranges one at a
# time. The SDK holds a range twice (its blocks, then them joined) before writing it, so one 8 MiB
# range in flight costs what two of 4 MiB did, in half the time on Azurite (fewer requests).
_FIRST_GET = 1024 * 1024
_GET_RANGE = 8 * 1024 * 1024
_RANGES_IN_FLIGHT = 1


class _Unsized:
    """A response body stream without ``__len__``.

    azure-core's stream reports its length in bytes, and the SDK joins a range's blocks with
    ``b"".join(list(stream))``, so ``list`` reserved 8 bytes per byte of the range before reading it:
    9x the range in the allocator's books (docs/repro/azure_download_list_len.md).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def __getattr__(self, name: str) -> Any:  # properties, content_length, response: the stream's
        if name == "_stream":  # not set yet (a copy): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self._stream, name)


def _unsized_body(response: Any, obj: Any, headers: dict[str, Any]) -> Any:
    """`download_blob`'s ``cls``: the SDK's own deserializer, with the body wrapped in `_Unsized`."""
    from azure.storage.blob._deserialize import deserialize_blob_stream

    location_mode, stream = deserialize_blob_stream(response, obj, headers)
    return location_mode, _Unsized(stream)


class WasbStore(ConnectedStore["WasbHook"]):
    scheme = "wasb"
    _ranged_config: tuple[Any, Any] | None = None

    def _connect(self) -> WasbHook:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        hook = WasbHook(wasb_conn_id=self.conn_id)
        _ = hook.blob_service_client  # built once, under the lock
        return hook

    @property
    def hook(self) -> WasbHook:
        return self.connected

    @property
    def _call(self) -> dict[str, Any]:
        """Every call: the SDK's retries off (its back-offs start at 15 s; stores/base.py retries) and
        the policy's timeouts."""
        return {
            "retry_total": 0,
            "connection_timeout": self.policy.connect_timeout,
            "read_timeout": self.policy.read_timeout,
        }

    def _endpoint_url(self) -> str:
        # primary_endpoint has no query string, so no SAS token.
        return str(self.hook.blob_service_client.primary_endpoint)

    def _upload_settings(self, content_type: str) -> dict[str, Any]:
        from azure.storage.blob import ContentSettings

        # The account's or container's default encryption when unset; downloads need nothing.
        scope = value(OPTIONS["wasb_encryption_scope"]).strip()
        return {
            "content_settings": ContentSettings(content_type=content_type),
            **({"encryption_scope": scope} if scope else {}),
        }

    def _put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        settings = self._upload_settings(content_type)
        self.hook.upload(
            self.bucket,
            key,
            data,
            length=len(data),
            overwrite=True,
            metadata=metadata,
            max_concurrency=4,
            **settings,
            **self._call,
        )

    def _put_parts(
        self, key: str, parts: Iterator[bytes], content_type: str, metadata: dict[str, str]
    ) -> None:
        upload_parts(self, self, key, parts, content_type, metadata)

    # The block protocol as upload.py's multipart one: staged blocks stay invisible (and are
    # discarded after 7 days) until the block list is committed, so nothing needs aborting.
    def _begin_parts(self, key: str, content_type: str, metadata: dict[str, str]) -> str:
        return ""  # Azure has no upload id: the blob's name and the block ids are enough

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        block_id = base64.b64encode(f"{number:08d}".encode()).decode()  # all of one length, as required
        scope = self._upload_settings("").get("encryption_scope")
        self._blob_client(key).stage_block(
            block_id, data, length=len(data), **({"encryption_scope": scope} if scope else {}), **self._call
        )
        return block_id

    def _finish_parts(
        self, key: str, upload_id: str, done: list[str], content_type: str, metadata: dict[str, str]
    ) -> None:
        from azure.storage.blob import BlobBlock

        self._blob_client(key).commit_block_list(
            [BlobBlock(block_id) for block_id in done],
            metadata=metadata,
            **self._upload_settings(content_type),
            **self._call,
        )

    def _abort_parts(self, key: str, upload_id: str) -> None:
        return None

    def _blob_client(self, key: str) -> BlobClient:
        return self.hook.blob_service_client.get_blob_client(self.bucket, key)

    def _get(self, key: str) -> bytes:
        return self.hook.download(self.bucket, key, max_concurrency=4, **self._call).readall()

    def _get_into(self, key: str, sink: Download) -> None:
        # The SDK writes each range into the sink as it arrives; its own first GET would be 32 MiB.
        blob = self._blob_client(key)
        blob._config = self._download_config(blob._config)
        downloader = blob.download_blob(max_concurrency=_RANGES_IN_FLIGHT, cls=_unsized_body, **self._call)
        sink.expect(downloader.size)
        downloader.readinto(sink)

    def _download_config(self, shared: Any) -> Any:
        """The client's configuration with the GETs above (the configuration is shared by every
        client of the hook, so a copy)."""
        if self._ranged_config is None or self._ranged_config[0] is not shared:
            ranged = copy.copy(shared)
            ranged.max_single_get_size = _FIRST_GET
            ranged.max_chunk_get_size = _GET_RANGE
            self._ranged_config = (shared, ranged)
        return self._ranged_config[1]

    def _delete(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.hook.blob_service_client.get_blob_client(self.bucket, key).delete_blob(**self._call)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "BlobNotFound":
                raise

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        # WasbHook's client is typed as sync or async; this hook is built sync.
        container = cast("ContainerClient", self.hook.blob_service_client.get_container_client(self.bucket))
        for blob in container.list_blobs(name_starts_with=prefix, **self._call):
            yield StoredObject(blob.name, blob.size or 0, blob.last_modified)

    def _bucket_exists(self) -> bool:
        return bool(self.hook.blob_service_client.get_container_client(self.bucket).exists(**self._call))

    def _classify(self, exc: BaseException) -> Failure | None:
        from azure.core import exceptions as aexc

        if isinstance(exc, aexc.ResourceNotFoundError):
            return "no_bucket" if getattr(exc, "error_code", None) == "ContainerNotFound" else "not_found"
        if isinstance(exc, aexc.ClientAuthenticationError):
            return "denied"
        # The downloader's own answer to a range broken off part way (after its own tries).
        broken = aexc.IncompleteReadError | aexc.ServiceResponseError | aexc.DecodeError
        if isinstance(exc, aexc.HttpResponseError) and isinstance(exc.__cause__, broken):
            return "unreachable"
        if isinstance(exc, aexc.HttpResponseError) and exc.status_code == 403:
            return "denied"
        if isinstance(exc, aexc.HttpResponseError) and (exc.status_code or 0) in (429, 500, 502, 503, 504):
            return "busy"
        if isinstance(exc, aexc.ServiceRequestError | aexc.ServiceResponseError):
            return "unreachable"
        return None
