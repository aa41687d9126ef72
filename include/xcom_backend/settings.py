"""Settings of every backend: the ``[xcom_backend]`` section of Airflow's configuration.

So ``AIRFLOW__XCOM_BACKEND__<OPTION>`` variables, airflow.cfg, ``_cmd``/``_secret`` options and
secrets backends all work, as for Airflow's own options. The per-store options (bucket, connection)
are declared with their store in ``registry.py``; the shared ones, and each store's server-side
encryption, here in ``OPTIONS``.

The pre-conf names (``XCOM_BACKEND_THRESHOLD_BYTES``, ...) are still read, with a deprecation warning
once per process, until the next release; an ``AIRFLOW__XCOM_BACKEND__`` value wins over them.

Values are read when a value is stored, so changed variables take effect without a restart; what
conf answered is remembered per distinct set of raw environment values, because asking conf costs
10-40 µs an option and a small push costs about 2 µs.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from include.xcom_backend.codecs import COMPRESSIONS, FRAME_CODECS

log = logging.getLogger(__name__)

SECTION = "xcom_backend"

T = TypeVar("T")


class XComSettingDeprecationWarning(DeprecationWarning):
    """An ``XCOM_BACKEND_*`` variable was used; its ``AIRFLOW__XCOM_BACKEND__*`` name replaces it."""


@dataclass(frozen=True)
class Option:
    """One option of the ``[xcom_backend]`` section."""

    key: str
    default: str
    legacy: str | None = None  # the variable read before conf, accepted with a warning for one release
    env_var: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: `raw` runs on every push, where an f-string and upper() would show.
        object.__setattr__(self, "env_var", f"AIRFLOW__{SECTION.upper()}__{self.key.upper()}")

    def raw(self) -> tuple[Raw, Raw]:
        """The two environment variables that can set it, as the environment holds them: the cache
        key of its value (compare for truth, never decode)."""
        return _environ_get(self.env_var), _environ_get(self.legacy) if self.legacy else None


Raw = str | bytes | None


def _environ_getter() -> Callable[[str], Raw]:
    """A lookup of one environment variable for cache keys, at dict speed.

    ``os.environ.get`` encodes the key and decodes the value on every call (about 0.3 µs); settings
    are looked up about twenty times a push, which would double the cost of a small value. On POSIX,
    ``os.environ`` keeps the encoded pairs in the dict ``_data``, updated by every change made through
    ``os.environ`` (``putenv`` alone is invisible to both), so its bytes are as current as ``get``.
    """
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return os.environ.get
    encoded: dict[str, bytes] = {}

    def get(name: str) -> Raw:
        key = encoded.get(name)
        if key is None:
            key = encoded[name] = os.fsencode(name)
        return data.get(key)

    return get


_environ_get = _environ_getter()


# The options every push reads (Settings); the cache key of Settings is their raw values alone.
_SHARED = (
    Option("threshold_bytes", "0", legacy="XCOM_BACKEND_THRESHOLD_BYTES"),
    Option("compression", "none", legacy="XCOM_BACKEND_COMPRESSION"),
    Option("pandas_format", "feather", legacy="XCOM_BACKEND_PANDAS_FORMAT"),
    Option("key_prefix", "xcom", legacy="XCOM_BACKEND_KEY_PREFIX"),
    # Off: a stored value's row (what the UI's XCom tab shows) says only its type, size and format.
    Option("preview", "true"),
    # One retry policy for every store and operation (stores/base.py). With these defaults a
    # call against a dead or hung store ends within attempts x (connect + read + the SDK's
    # fixed waits) + back-off = 3 x (5 + 10 + 1) s + 1.5 s = 49.5 s (RetryPolicy.failure_bound).
    Option("attempts", "3", legacy="XCOM_BACKEND_READ_ATTEMPTS"),
    Option("connect_timeout", "5"),
    Option("read_timeout", "10"),
)

# Each store's own server-side encryption, read by its adapter (stores/) on upload only: reading
# needs none of them. Empty means none, so an unset option leaves uploads as they were.
_ENCRYPTION = (
    Option("s3_sse", ""),  # AES256 (SSE-S3) or aws:kms (SSE-KMS)
    Option("s3_sse_kms_key_id", ""),  # with aws:kms; empty: the account's AWS managed key
    Option("minio_sse", ""),  # the same two modes, through the minio SDK's SseS3 / SseKMS
    Option("minio_sse_kms_key_id", ""),  # required with aws:kms: the SDK sends a key id
    Option("gcs_kms_key_name", ""),  # projects/P/locations/L/keyRings/R/cryptoKeys/K
    Option("wasb_encryption_scope", ""),  # a scope that exists on the storage account
)

OPTIONS = {option.key: option for option in (*_SHARED, *_ENCRYPTION)}

_warned: set[str] = set()
_values: dict[tuple[str, Raw, Raw], str] = {}
_lock = threading.Lock()


def value(option: Option) -> str:
    """The option's text: conf's ``[xcom_backend]`` first, then the old variable, then the default.
    An empty value means the default, as in `.env` files."""
    cache_key = (option.key, *option.raw())
    found = _values.get(cache_key)
    if found is None:
        found = _resolve(option)
        with _lock:
            if len(_values) > 4096:  # tests that set thousands of distinct buckets
                _values.clear()
            _values[cache_key] = found
    return found


def _resolve(option: Option) -> str:
    from airflow.sdk.configuration import conf

    configured = (conf.get(SECTION, option.key, fallback="") or "").strip()
    if configured:
        return configured
    legacy = os.environ.get(option.legacy, "").strip() if option.legacy else ""
    if legacy:
        _warn_legacy(option)
        return legacy
    return option.default


def _warn_legacy(option: Option) -> None:
    if option.legacy in _warned:
        return
    _warned.add(str(option.legacy))
    message = (
        f"{option.legacy} is deprecated and will stop working in the next release: "
        f"set {option.env_var} (or `{option.key}` in airflow.cfg's [{SECTION}] section) instead"
    )
    warnings.warn(message, XComSettingDeprecationWarning, stacklevel=4)
    log.warning("%s", message)


def parsed(option: Option, parse: Callable[[str], T], expected: str) -> T:
    """``parse`` applied to the option's value; a bad value is an error naming the option and value."""
    text = value(option)
    try:
        return parse(text)
    except ValueError:
        new, old = option.raw()
        source = option.legacy if old and not new else option.env_var
        raise ValueError(f"XCom backend setting {source} must be {expected}, got {text!r}") from None


def _whole_number(text: str) -> int:
    number = int(text)
    if number < 0:
        raise ValueError(text)
    return number


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(text)
    return seconds


_BOOLEANS = {word: True for word in ("true", "yes", "on", "1")} | {
    word: False for word in ("false", "no", "off", "0")
}


def _boolean(text: str) -> bool:
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(text) from None


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(text)
        return text.lower()

    return parse


_THRESHOLD = OPTIONS["threshold_bytes"]
_thresholds: dict[tuple[Raw, Raw], int] = {}


def threshold_bytes() -> int:
    """The threshold alone, for the small-value path where reading every setting would cost more
    than storing the value."""
    raw = _THRESHOLD.raw()
    found = _thresholds.get(raw)
    if found is None:
        found = _thresholds[raw] = parsed(_THRESHOLD, _whole_number, "a whole number of bytes")
    return found


@dataclass(frozen=True)
class RetryPolicy:
    """How every store call is tried: the adapters pass the timeouts to their SDK (whose own retries
    are off) and stores/base.py retries an unreachable or busy store."""

    attempts: int
    connect_timeout: float
    read_timeout: float

    def backoffs(self) -> list[float]:
        """The waits between attempts: 0.5 s, doubling."""
        return [0.5 * 2**n for n in range(self.attempts - 1)]

    def failure_bound(self, fixed_wait: float = 0.0) -> float:
        """Longest a call against a dead or hung store takes, from its first attempt to the
        XComStoreUnreachable, in seconds; ``fixed_wait`` is what an SDK waits per attempt on top."""
        return self.attempts * (self.connect_timeout + self.read_timeout + fixed_wait) + sum(self.backoffs())


@dataclass(frozen=True)
class Settings:
    threshold_bytes: int
    compression: str | None
    pandas_format: str
    key_prefix: str
    attempts: int
    connect_timeout: float
    read_timeout: float
    preview: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        # Parsed once per distinct set of raw values: validating every option on every push
        # would cost more than a small push itself.
        raw = tuple(option.raw() for option in _SHARED)
        settings = _parsed.get(raw)
        if settings is None:
            settings = _parsed[raw] = cls._parse()
        return settings

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.connect_timeout, self.read_timeout)

    @classmethod
    def _parse(cls) -> Settings:
        compressions = ("none", *COMPRESSIONS)
        compression = parsed(OPTIONS["compression"], _one_of(compressions), " or ".join(compressions))
        formats = tuple(FRAME_CODECS)
        return cls(
            threshold_bytes=threshold_bytes(),
            compression=None if compression == "none" else compression,
            pandas_format=parsed(OPTIONS["pandas_format"], _one_of(formats), " or ".join(formats)),
            key_prefix=value(OPTIONS["key_prefix"]).strip("/"),
            attempts=max(parsed(OPTIONS["attempts"], _whole_number, "a whole number of attempts"), 1),
            connect_timeout=parsed(OPTIONS["connect_timeout"], _positive_seconds, "a number of seconds"),
            read_timeout=parsed(OPTIONS["read_timeout"], _positive_seconds, "a number of seconds"),
            preview=parsed(OPTIONS["preview"], _boolean, "true or false"),
        )


_parsed: dict[tuple[tuple[Raw, Raw], ...], Settings] = {}


def env(name: str, default: str) -> str:
    """A plain environment variable (the tutorial's ``MINIO_*``), empty meaning the default."""
    return os.environ.get(name, "").strip() or default
