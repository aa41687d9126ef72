"""The stores the tests run on, read from the store table (include/xcom_backend/registry.py)."""

from __future__ import annotations

from typing import Any

from include.xcom_backend.registry import TABLE

# Stores served by a local server (tests marked `stores`), and stores that need none (unit tests).
SERVED = [scheme for scheme, row in TABLE.items() if row.server is not None]
IN_PROCESS = [scheme for scheme, row in TABLE.items() if row.server is None]


def json_backend(scheme: str) -> str:
    path = TABLE[scheme].json_backend
    assert path, f"{scheme} has no public JSON backend"
    return path


def bucket_var(scheme: str) -> str:
    """The variable that sets the bucket (container) of ``scheme``."""
    return TABLE[scheme].bucket_option.env_var


def server_of(local_stores: Any, scheme: str) -> Any:
    """The running local server that serves ``scheme`` (its `server` in the table)."""
    return local_stores.server_for(scheme)
