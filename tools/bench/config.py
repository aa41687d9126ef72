"""The benchmark's fixed facts: sizes, targets, the stores it runs on (read from the store table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from include.xcom_backend.registry import TABLE, StoreRow
from include.xcom_backend.settings import OPTIONS
from tools.servers import server_class

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROWS = (10_000, 100_000, 1_000_000)
HUGE_ROWS = 10_000_000
QUICK_ROWS = (1_000, 5_000)
# The scale series (loopback, pandas and floor only): frames up to HUGE_ROWS and one bytes value,
# which the pandas backends store as it is. Quick runs take a tiny series of the same shape.
SCALE_ROWS = (*DEFAULT_ROWS, 3_000_000, HUGE_ROWS)
SCALE_BYTES = 2**30
QUICK_SCALE_ROWS = QUICK_ROWS
QUICK_SCALE_BYTES = 4 * 2**20
SCALE_METHODS = ("pandas", "floor")
TARGET_ROWS = 1_000_000
METHODS = ("pandas", "floor", "parquet", "csv", "commonio", "handwritten")
SMALL_THRESHOLD = 65_536

# Targets of the issue: limits on ratios (lower is better unless noted).
TARGET_CSV_SPEEDUP = 10.0  # CSV round trip / pandas round trip, at least
TARGET_MEMORY = 1.5  # peak extra memory / frame's in-memory size, at most
TARGET_SMALL = 1.2  # threshold-on small value / Airflow's database XCom, at most
TARGET_FLOOR = 1.25  # pandas round trip / the I/O floor, at most, on every store and link
# Time grows linearly with the frame when the least-squares slope of log(median round trip) on
# log(rows), over the series' sizes from LINEAR_FIT_FROM_ROWS up, lies within these bounds. Below a
# million rows the fixed costs (requests, connections, thread starts) still flatten the curve: fitted
# from 100,000 rows, the series of 2026-12-01 had slopes of 0.81-0.89. A series with fewer than two
# sizes that large (a quick run) is fitted over all its sizes.
LINEAR_FIT_FROM_ROWS = 1_000_000
TARGET_LINEAR_SLOPE = (0.9, 1.1)

# The cloud-like link (tools/shaped_link.py): 1 Gbit/s is a common VM-to-object-store bandwidth; 5 ms
# each way puts a round trip in the range of a store in the same cloud region.
LINKS = ("loopback", "shaped")
LINK_RATE = "1gbit"
LINK_DELAY_MS = 5.0
# CSV and Parquet are timed on loopback only: they are the other formats of the same backend, compared
# on CPU cost, which the link does not change.
SHAPED_METHODS = ("pandas", "floor", "commonio", "handwritten")
# fsspec protocol of common.io's backend per store; a store missing here is reported unavailable.
COMMONIO_PROTOCOLS = {"s3": "s3", "minio": "s3", "gcs": "gs", "wasb": "abfs"}
# Protocols whose fsspec package cannot be installed beside the project's pins (s3fs: its aiobotocore
# pins an older botocore): where it is missing, common.io runs in a venv of its own (commonio_venv).
COMMONIO_OWN_VENV = {"s3": "s3fs"}


@dataclass(frozen=True)
class StoreSpec:
    """A store as the benchmark sees it: its table row, and the benchmark's own facts about it."""

    row: StoreRow
    floor_limit: float
    commonio: str | None

    @property
    def name(self) -> str:
        return self.row.scheme

    @property
    def label(self) -> str:
        assert self.row.server is not None
        return f"{self.row.scheme} ({server_class(self.row.server).label})"

    @property
    def backend(self) -> str:
        """Dotted path of the store's pandas backend class."""
        assert self.row.pandas_backend is not None
        return self.row.pandas_backend

    @property
    def bucket_env(self) -> str:
        return self.row.bucket_option.env_var


# Every store with a pandas backend and a local server to run it against, in the table's order.
STORE_SPECS = {
    row.scheme: StoreSpec(row, TARGET_FLOOR, COMMONIO_PROTOCOLS.get(row.scheme))
    for row in TABLE.values()
    if row.server and row.pandas_backend
}

# Reading the bench's own settings must not depend on what the caller's shell has set: each shared
# option (under its name and its pre-conf name) is emptied, which means its default.
BACKEND_SETTINGS = tuple(
    name for option in OPTIONS.values() for name in (option.env_var, option.legacy) if name
)
PANDAS_FORMAT = OPTIONS["pandas_format"].env_var
# The pandas method is the backend as users get it: the frame format of the default settings.
FRAME_FORMAT = OPTIONS["pandas_format"].default
FRAME_FORMAT_NAME = FRAME_FORMAT.title()  # "Feather", in tables and profile steps
ENCODE_STEP, DECODE_STEP = f"encode ({FRAME_FORMAT_NAME})", f"decode ({FRAME_FORMAT_NAME})"
THRESHOLD_SETTING = OPTIONS["threshold_bytes"].env_var
READ_TIMEOUT_SETTING = OPTIONS["read_timeout"].env_var
# fake-gcs-server answers a single-request upload only once it has parsed the whole body, which for
# 1 GiB takes longer than the default read timeout on a loaded machine; the bytes value gets this one.
SCALE_READ_TIMEOUT_S = 300
COMMONIO_GCS_CONN = "bench_commonio_gcs"
PARQUET_TYPE = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class BenchConfig:
    """What one run measures: frame sizes, timed runs per method, stores, and the optional passes."""

    rows: tuple[int, ...] = DEFAULT_ROWS
    repeat: int = 3
    stores: tuple[str, ...] = tuple(STORE_SPECS)
    quick: bool = False
    memory: bool = True
    profile: bool = True
    small_loops: int = 2000
    links: tuple[str, ...] = LINKS
    methods: tuple[str, ...] = METHODS
    link_rate: str = LINK_RATE
    link_delay_ms: float = LINK_DELAY_MS
    scale: bool = True
    scale_only: bool = False
    scale_rows: tuple[int, ...] = SCALE_ROWS
    scale_bytes: int = SCALE_BYTES
