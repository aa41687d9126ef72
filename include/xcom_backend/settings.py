"""Settings shared by every backend, read from the environment when a value is stored.

Read at call time rather than import time so that `.env`, the Deployment's variables and tests all
take effect without re-importing; each read is a handful of dictionary lookups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

COMPRESSIONS = ("gzip", "zstd")
PANDAS_FORMATS = ("parquet", "csv")


def env(name: str, default: str) -> str:
    """An environment setting, with empty values meaning "use the default" as in `.env` files."""
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    threshold_bytes: int
    compression: str | None
    pandas_format: str
    key_prefix: str
    read_attempts: int

    @classmethod
    def from_env(cls) -> Settings:
        raw_threshold = env("XCOM_BACKEND_THRESHOLD_BYTES", "0")
        try:
            threshold = int(raw_threshold)
        except ValueError:
            raise ValueError(
                f"XCOM_BACKEND_THRESHOLD_BYTES must be a whole number of bytes, got {raw_threshold!r}"
            ) from None
        compression = env("XCOM_BACKEND_COMPRESSION", "none").lower()
        if compression not in (*COMPRESSIONS, "none"):
            raise ValueError(
                f"XCOM_BACKEND_COMPRESSION must be none, {' or '.join(COMPRESSIONS)}; got {compression!r}"
            )
        pandas_format = env("XCOM_BACKEND_PANDAS_FORMAT", "parquet").lower()
        if pandas_format not in PANDAS_FORMATS:
            raise ValueError(
                f"XCOM_BACKEND_PANDAS_FORMAT must be {' or '.join(PANDAS_FORMATS)}; got {pandas_format!r}"
            )
        prefix = env("XCOM_BACKEND_KEY_PREFIX", "xcom").strip("/")
        attempts = int(env("XCOM_BACKEND_READ_ATTEMPTS", "4"))
        return cls(
            threshold_bytes=max(threshold, 0),
            compression=None if compression == "none" else compression,
            pandas_format=pandas_format,
            key_prefix=prefix,
            read_attempts=max(attempts, 1),
        )
