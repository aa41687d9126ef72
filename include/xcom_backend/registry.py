"""The table of stores: one row per store, the single place a store is declared.

Like fsspec's ``known_implementations``: a row names the adapter by dotted path, so reading the table
imports no SDK. Each field, and who reads it:

``scheme``
    The one word for a store everywhere: the reference prefix (``xcom_<scheme>://``, read by
    ``reference.py``), the key of this table, the test parameter and the tools' name for it.
``adapter``
    Dotted path of the ``ObjectStore`` subclass, imported on first use (``StoreRow.open``, which the
    backend and ``stores.STORES`` call).
``options``
    The settings the adapter reads, by role (``"bucket"``, ``"conn_id"``): each an option of the
    ``[xcom_backend]`` section with its default and, for one release, its old variable name
    (``settings.Option``). The bucket's default is ``default_bucket``.
``environment``
    Plain variables the adapter reads as they are (the tutorial's ``MINIO_*``), not through conf.
``json_backend`` / ``pandas_backend``
    Dotted paths of the public backend classes (``AIRFLOW__CORE__XCOM_BACKEND``); ``catalog.py``
    derives the catalogue from them. None for a store with no public classes (memory).
``server``
    Name of the local server that serves the store in tests, the demo and the benchmark (tools/
    read it); None when no server is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from include.xcom_backend.settings import Option

if TYPE_CHECKING:
    from include.xcom_backend.stores.base import ObjectStore


@dataclass(frozen=True)
class StoreRow:
    scheme: str
    title: str
    adapter: str
    options: Mapping[str, Option]
    json_backend: str | None
    pandas_backend: str | None
    server: str | None
    environment: tuple[str, ...] = ()

    @property
    def bucket_option(self) -> Option:
        return self.options["bucket"]

    @property
    def default_bucket(self) -> str:
        return self.bucket_option.default

    @property
    def public_backends(self) -> tuple[str, ...]:
        return tuple(path for path in (self.json_backend, self.pandas_backend) if path)

    def adapter_class(self) -> type[ObjectStore]:
        module, _, name = self.adapter.rpartition(".")
        cls: type[ObjectStore] = getattr(importlib.import_module(module), name)
        return cls

    def open(self, bucket: str | None = None) -> ObjectStore:
        """The shared adapter for ``bucket``, or for the configured bucket when None."""
        return self.adapter_class().configured(bucket)


def _conn_and_bucket(scheme: str, conn_id: str, bucket: str, *, legacy: str, bucket_word: str = "bucket"):
    return {
        "conn_id": Option(f"{scheme}_conn_id", conn_id, legacy=f"XCOM_BACKEND_{legacy}_CONN_ID"),
        "bucket": Option(
            f"{scheme}_{bucket_word}", bucket, legacy=f"XCOM_BACKEND_{legacy}_{bucket_word.upper()}"
        ),
    }


_ROWS = (
    StoreRow(
        scheme="s3",
        title="Amazon S3 (or any S3 API) through S3Hook",
        adapter="include.xcom_backend.stores.s3.S3Store",
        options=_conn_and_bucket("s3", "s3_xcom_backend_conn", "s3-xcom-backend-example", legacy="S3"),
        json_backend="include.s3_xcom_backend_json.S3XComBackendJSON",
        pandas_backend="include.s3_xcom_backend_pandas.S3XComBackendPandas",
        server="seaweedfs",
    ),
    StoreRow(
        scheme="gcs",
        title="Google Cloud Storage through GCSHook",
        adapter="include.xcom_backend.stores.gcs.GCSStore",
        options=_conn_and_bucket("gcs", "gcs_xcom_backend_conn", "gcs-xcom-backend-example", legacy="GCS"),
        json_backend="include.gcs_xcom_backend_json.GCSXComBackendJSON",
        pandas_backend="include.gcs_xcom_backend_pandas.GCSXComBackendPandas",
        server="fake-gcs",
        # The Google client's only endpoint setting; the local emulator is reached through it.
        environment=("STORAGE_EMULATOR_HOST",),
    ),
    StoreRow(
        scheme="wasb",
        title="Azure Blob Storage through WasbHook",
        adapter="include.xcom_backend.stores.wasb.WasbStore",
        options=_conn_and_bucket(
            "wasb", "azure_xcom_backend_conn", "custom-xcom-backend", legacy="AZURE", bucket_word="container"
        ),
        json_backend="include.azure_xcom_backend_json.WasbXComBackendJSON",
        pandas_backend="include.azure_xcom_backend_pandas.WasbXComBackendPandas",
        server="azurite",
    ),
    StoreRow(
        scheme="minio",
        title="MinIO (or any S3 API) through the minio SDK",
        adapter="include.xcom_backend.stores.minio.MinIOStore",
        options={"bucket": Option("minio_bucket", "custom-xcom-backend", legacy="XCOM_BACKEND_MINIO_BUCKET")},
        json_backend="include.minio_xcom_backend_json.MinIOXComBackendJSON",
        pandas_backend="include.minio_xcom_backend_pandas.MinIOXComBackendPandas",
        server="seaweedfs",
        environment=("MINIO_IP", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE"),
    ),
    StoreRow(
        scheme="memory",
        title="This process's memory, like fsspec's memory:// (tests)",
        adapter="include.xcom_backend.stores.memory.MemoryStore",
        options={"bucket": Option("memory_bucket", "xcom-memory")},
        json_backend=None,
        pandas_backend=None,
        server=None,
    ),
)

TABLE: dict[str, StoreRow] = {row.scheme: row for row in _ROWS}
"""scheme -> row, in the order the catalogue, the tests and the tools list the stores."""


def row(scheme: str) -> StoreRow:
    """The row of ``scheme``, or an error naming it and the known ones."""
    try:
        return TABLE[scheme]
    except KeyError:
        raise ValueError(f"unknown XCom store {scheme!r}; known: {', '.join(TABLE)}") from None


def open_store(scheme: str, bucket: str | None = None) -> ObjectStore:
    """The adapter of ``scheme`` for ``bucket`` (the configured bucket when None)."""
    return row(scheme).open(bucket)
