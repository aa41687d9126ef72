"""Where a value lives: the object key built from the task's ids (and its parser), and the reference
string kept in Airflow.

A reference looks like ``xcom_s3://my-bucket/xcom/my_dag/manual__2026-01-01T00~3A00~3A00~2B00~3A00/
extract/-1/return_value/5f0c….json.gz#sha256=ab12…`` — the prefix tells which store, then the bucket
and key, then the checksum of the stored bytes. The database row of a stored value is a JSON object
carrying it under ``ROW_KEY`` next to a description of the value (preview.py), which is what the UI's
XCom tab shows; rows written before that are the bare reference string, and both are read.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from include.xcom_backend.codecs import formats_of
from include.xcom_backend.registry import TABLE

# One prefix per store, from the store table; the tutorial's names, so its references stay recognisable.
SCHEMES = tuple(TABLE)

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_MAX_COMPONENT = 180  # keeps the whole key well under S3's and GCS's 1,024-byte limit

# A codec's extension (`.npy`, `.polars-series.arrow`) and a compression's suffix.
_EXTENSION = r"(?:\.[a-z0-9-]+){1,3}"
_REFERENCE = re.compile(
    r"^xcom_(?P<scheme>" + "|".join(SCHEMES) + r")://"
    r"(?P<bucket>[a-z0-9][a-z0-9._-]{1,221}[a-z0-9])/"
    r"(?P<key>(?:[A-Za-z0-9._~-]+/){5,}[0-9a-f]{32}(?P<ext>" + _EXTENSION + "))"
    r"#sha256=(?P<sha256>[0-9a-f]{64})$"
)
# Anything starting like a reference must be stored as an object, or reading it back would mistake
# a user's string for a pointer.
LOOKS_LIKE_REFERENCE = re.compile(r"^xcom_(" + "|".join(SCHEMES) + r")://")
# The key of the reference in a stored value's row. A user's dict carrying it is likewise always
# stored as an object, so a dict row with this key is always one of ours.
ROW_KEY = "xcom_reference"


def looks_like_reference(value: object) -> bool:
    """Whether a value, if kept in Airflow's DB as it is, would read back as a pointer: a string
    starting like a reference, or a dict with the row's reference key."""
    if isinstance(value, str):
        return LOOKS_LIKE_REFERENCE.match(value) is not None
    return isinstance(value, dict) and ROW_KEY in value


def encode_component(value: str) -> str:
    """Make one id safe as a key segment on every store, reversibly, with `~XX` escapes.

    Run ids carry `:` and `+`; task ids and keys may carry `/` or `..`. Only letters, digits, `-`,
    `_` and `.` pass through; a leading `.` is escaped so that no segment is `.` or `..`.
    """
    out = []
    for i, ch in enumerate(value):
        if ch in _SAFE and not (ch == "." and i == 0):
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    encoded = "".join(out) or "~"
    if len(encoded) > _MAX_COMPONENT:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = f"{encoded[: _MAX_COMPONENT - 18]}~~{digest}"
    return encoded


# The last segment of every object key the backends write: a uuid, then the codec's extension(s).
_OBJECT_NAME = re.compile(r"[0-9a-f]{32}" + _EXTENSION)
_ESCAPE = re.compile(r"~([0-9A-F]{2})")


class XComGroup(NamedTuple):
    """The XCom rows one object can belong to: every map index of one task's key in one run."""

    dag_id: str
    run_id: str
    task_id: str
    key: str


def decode_component(segment: str) -> str | None:
    """The id `encode_component` turned into ``segment``, or None when it cannot be
    recovered (ids longer than 180 characters are shortened with a digest) or was not encoded so."""
    if segment == "~":
        return ""
    if "~~" in segment:
        return None
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(segment):
        raw += segment[position : match.start()].encode("ascii", "replace")
        raw.append(int(match[1], 16))
        position = match.end()
    raw += segment[position:].encode("ascii", "replace")
    try:
        value = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    # Only the canonical spelling counts: anything else was not written by the backends.
    return value if encode_component(value) == segment else None


def key_prefix(prefix: str) -> str:
    """The listing prefix of every XCom object for the key_prefix setting ``prefix``."""
    encoded = "/".join(encode_component(p) for p in prefix.split("/") if p)
    return f"{encoded}/" if encoded else ""


def _segments(object_key: str, prefix: str) -> list[str] | None:
    """The six segments after ``prefix`` (dag, run, task, map index, key, object name), if it has them."""
    listing_prefix = key_prefix(prefix)
    if not object_key.startswith(listing_prefix):
        return None
    parts = object_key[len(listing_prefix) :].split("/")
    if len(parts) != 6 or not _OBJECT_NAME.fullmatch(parts[5]) or not all(parts[:5]):
        return None
    return parts


def is_xcom_object(object_key: str, prefix: str) -> bool:
    """Whether ``object_key`` has the layout of the keys the backends write under ``prefix``."""
    return _segments(object_key, prefix) is not None


def parse_object_key(object_key: str, prefix: str) -> tuple[XComGroup, int] | None:
    """The group and map index an object was written for, or None if the key does not say."""
    parts = _segments(object_key, prefix)
    if parts is None:
        return None
    decoded = [decode_component(p) for p in parts[:5]]
    if any(value is None for value in decoded):
        return None
    dag_id, run_id, task_id, map_index, key = (str(value) for value in decoded)
    if not re.fullmatch(r"-1|\d+", map_index):
        return None
    return XComGroup(dag_id, run_id, task_id, key), int(map_index)


def run_prefix(object_key: str) -> str:
    """The listing prefix of every object of the run ``object_key`` belongs to (``<prefix>/<dag>/<run>/``),
    whatever key prefix it was written under."""
    parts = object_key.split("/")
    if len(parts) < 6 or not _OBJECT_NAME.fullmatch(parts[-1]):
        raise ValueError(f"{object_key!r} is not an XCom object key")
    return "/".join(parts[:-4]) + "/"


def object_key(
    prefix: str, *, dag_id: str, run_id: str, task_id: str, map_index: int, key: str, extension: str
) -> str:
    """A fresh, unique key for one XCom value; a uuid makes concurrent and repeated pushes distinct."""
    parts = [encode_component(p) for p in (dag_id, run_id, task_id, str(map_index), key)]
    return key_prefix(prefix) + "/".join(parts) + f"/{uuid.uuid4().hex}{extension}"


@dataclass(frozen=True)
class Reference:
    scheme: str
    bucket: str
    key: str
    sha256: str

    def __str__(self) -> str:
        return f"xcom_{self.scheme}://{self.bucket}/{self.key}#sha256={self.sha256}"

    @property
    def extension(self) -> str:
        """The codec's extension and the compression's suffix, e.g. ``.json.gz``."""
        codec, compression = formats_of(self.key)
        return codec.extension + (compression.suffix if compression else "")

    @classmethod
    def parse(cls, value: object) -> Reference | None:
        """The reference in `value` (a row, or the bare string of older rows), or None when `value`
        is not one of ours (plain XCom data)."""
        if isinstance(value, dict):
            value = value.get(ROW_KEY)
        if not isinstance(value, str):
            return None
        match = _REFERENCE.match(value)
        if match is None:
            return None
        return cls(match["scheme"], match["bucket"], match["key"], match["sha256"])
