"""One adapter per cloud. Adding a fifth cloud: write an ObjectStore subclass and register it here."""

from __future__ import annotations

from collections.abc import Callable

from include.xcom_backend.stores.base import ObjectStore, StoredObject
from include.xcom_backend.stores.gcs import GCSStore
from include.xcom_backend.stores.minio import MinIOStore
from include.xcom_backend.stores.s3 import S3Store
from include.xcom_backend.stores.wasb import WasbStore

# scheme -> factory(bucket or None for the configured one). Used to read any reference, whichever
# backend is configured now, so switching backends keeps older XComs readable.
STORES: dict[str, Callable[..., ObjectStore]] = {
    "s3": S3Store.from_env,
    "gcs": GCSStore.from_env,
    "wasb": WasbStore.from_env,
    "minio": MinIOStore.from_env,
}

__all__ = ["STORES", "GCSStore", "MinIOStore", "ObjectStore", "S3Store", "StoredObject", "WasbStore"]
