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


def _connected(
    scheme: str, conn_id: str, bucket: str, old: str, bucket_word: str = "bucket"
) -> dict[str, Option]:
    """The options of a store reached through an Airflow connection: its id and the bucket."""
    return {
        "conn_id": Option(f"{scheme}_conn_id", conn_id, legacy=f"XCOM_BACKEND_{old}_CONN_ID"),
        "bucket": Option(
            f"{scheme}_{bucket_word}", bucket, legacy=f"XCOM_BACKEND_{old}_{bucket_word.upper()}"
        ),
    }


def _public(module: str, prefix: str) -> tuple[str, str]:
    """The dotted paths of a store's JSON and pandas classes, `include/<module>_xcom_backend_*.py`."""
    return (
        f"include.{module}_xcom_backend_json.{prefix}XComBackendJSON",
        f"include.{module}_xcom_backend_pandas.{prefix}XComBackendPandas",
    )


_S3 = _connected("s3", "s3_xcom_backend_conn", "s3-xcom-backend-example", "S3")
_GCS = _connected("gcs", "gcs_xcom_backend_conn", "gcs-xcom-backend-example", "GCS")
_WASB = _connected("wasb", "azure_xcom_backend_conn", "custom-xcom-backend", "AZURE", bucket_word="container")
_MINIO = {"bucket": Option("minio_bucket", "custom-xcom-backend", legacy="XCOM_BACKEND_MINIO_BUCKET")}
_MINIO_ENV = ("MINIO_IP", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE")
# The Google client's only endpoint setting; the local emulator is reached through it.
_GCS_ENV = ("STORAGE_EMULATOR_HOST",)
_STORES = "include.xcom_backend.stores"

# scheme, title, adapter, options, (JSON class, pandas class), local server, plain variables read
_ROWS = (
    StoreRow(
        "s3", "Amazon S3 (or any S3 API)", f"{_STORES}.s3.S3Store", _S3, *_public("s3", "S3"), "seaweedfs"
    ),
    StoreRow(
        "gcs",
        "Google Cloud Storage",
        f"{_STORES}.gcs.GCSStore",
        _GCS,
        *_public("gcs", "GCS"),
        "fake-gcs",
        _GCS_ENV,
    ),
    StoreRow(
        "wasb", "Azure Blob Storage", f"{_STORES}.wasb.WasbStore", _WASB, *_public("azure", "Wasb"), "azurite"
    ),
    StoreRow(
        "minio",
        "MinIO (or any S3 API)",
        f"{_STORES}.minio.MinIOStore",
        _MINIO,
        *_public("minio", "MinIO"),
        "seaweedfs",
        _MINIO_ENV,
    ),
    StoreRow(
        "memory",
        "This process's memory, like fsspec's memory://",
        f"{_STORES}.memory.MemoryStore",
        {"bucket": Option("memory_bucket", "xcom-memory")},
        None,
        None,
        None,
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
