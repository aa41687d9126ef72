"""Shared core of this project's XCom backends; the public classes live in include/*_xcom_backend_*.py."""

from include.xcom_backend.backend import ObjectStoreXComBackend
from include.xcom_backend.errors import (
    XComAccessDenied,
    XComBucketNotFound,
    XComIntegrityError,
    XComObjectNotFound,
    XComReferenceError,
    XComStorageError,
    XComStoreUnreachable,
)

__all__ = [
    "ObjectStoreXComBackend",
    "XComAccessDenied",
    "XComBucketNotFound",
    "XComIntegrityError",
    "XComObjectNotFound",
    "XComReferenceError",
    "XComStorageError",
    "XComStoreUnreachable",
]
