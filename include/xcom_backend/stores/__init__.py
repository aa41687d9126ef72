"""The store adapters; which stores exist is the table in ``include/xcom_backend/registry.py``."""

from __future__ import annotations

from collections.abc import Callable

from include.xcom_backend.registry import TABLE
from include.xcom_backend.stores.base import ObjectStore, StoredObject
from include.xcom_backend.stores.gcs import GCSStore
from include.xcom_backend.stores.minio import MinIOStore
from include.xcom_backend.stores.s3 import S3Store
from include.xcom_backend.stores.wasb import WasbStore

# scheme -> factory(bucket or None for the configured one), derived from the table. Used to read any
# reference, whichever backend is configured now, so switching backends keeps older XComs readable.
STORES: dict[str, Callable[..., ObjectStore]] = {scheme: row.open for scheme, row in TABLE.items()}

__all__ = ["STORES", "GCSStore", "MinIOStore", "ObjectStore", "S3Store", "StoredObject", "WasbStore"]
