"""Settings shared by every backend, read from the environment when a value is stored.

Read at call time rather than import time so that `.env`, the Deployment's variables and tests all
take effect without re-importing; each read is a handful of dictionary lookups.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

COMPRESSIONS = ("gzip", "zstd")
PANDAS_FORMATS = ("parquet", "csv")


def env(name: str, default: str) -> str:
    """An environment setting, with empty values meaning "use the default" as in `.env` files."""
    value = os.environ.get(name, "").strip()
    return value or default


def threshold_bytes() -> int:
    """The threshold alone, for the small-value path where reading every setting would cost more
    than storing the value."""
    return Settings.threshold_from(os.environ.get("XCOM_BACKEND_THRESHOLD_BYTES"))


_NAMES = (
    "XCOM_BACKEND_THRESHOLD_BYTES",
    "XCOM_BACKEND_COMPRESSION",
    "XCOM_BACKEND_PANDAS_FORMAT",
    "XCOM_BACKEND_KEY_PREFIX",
    "XCOM_BACKEND_READ_ATTEMPTS",
)


@dataclass(frozen=True)
class Settings:
    threshold_bytes: int
    compression: str | None
    pandas_format: str
    key_prefix: str
    read_attempts: int

    @classmethod
    def from_env(cls) -> Settings:
        # Parsed once per distinct set of raw values: pushing a small value should cost about as
        # much as Airflow's own XCom, and validating five variables each time would dominate it.
        raw = tuple(os.environ.get(name) for name in _NAMES)
        settings = _parsed.get(raw)
        if settings is None:
            settings = _parsed[raw] = cls._parse()
        return settings

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def threshold_from(raw: str | None) -> int:
        value = (raw or "").strip() or "0"
        try:
            return max(int(value), 0)
        except ValueError:
            message = f"XCOM_BACKEND_THRESHOLD_BYTES must be a whole number of bytes, got {value!r}"
            raise ValueError(message) from None

    @classmethod
    def _parse(cls) -> Settings:
        threshold = cls.threshold_from(os.environ.get("XCOM_BACKEND_THRESHOLD_BYTES"))
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
            threshold_bytes=threshold,
            compression=None if compression == "none" else compression,
            pandas_format=pandas_format,
            key_prefix=prefix,
            read_attempts=max(attempts, 1),
        )


_parsed: dict[tuple[str | None, ...], Settings] = {}
