"""Where a value lives: the object key built from the task's ids, and the reference string kept in Airflow.

A reference looks like ``xcom_s3://my-bucket/xcom/my_dag/manual__2026-01-01T00~3A00~3A00~2B00~3A00/
extract/-1/return_value/5f0c….json.gz#sha256=ab12…`` — the prefix tells which store, then the bucket
and key, then the checksum of the stored bytes. It is what the UI's XCom tab shows.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from include.xcom_backend.registry import TABLE

# One prefix per store, from the store table; the tutorial's names, so its references stay recognisable.
SCHEMES = tuple(TABLE)

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_MAX_COMPONENT = 180  # keeps the whole key well under S3's and GCS's 1,024-byte limit

_REFERENCE = re.compile(
    r"^xcom_(?P<scheme>" + "|".join(SCHEMES) + r")://"
    r"(?P<bucket>[a-z0-9][a-z0-9._-]{1,221}[a-z0-9])/"
    r"(?P<key>(?:[A-Za-z0-9._~-]+/){5,}[0-9a-f]{32}(?P<ext>(?:\.[a-z0-9]+){1,2}))"
    r"#sha256=(?P<sha256>[0-9a-f]{64})$"
)
# Anything starting like a reference must be stored as an object, or reading it back would mistake
# a user's string for a pointer.
LOOKS_LIKE_REFERENCE = re.compile(r"^xcom_(" + "|".join(SCHEMES) + r")://")


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


def object_key(
    prefix: str, *, dag_id: str, run_id: str, task_id: str, map_index: int, key: str, extension: str
) -> str:
    """A fresh, unique key for one XCom value; a uuid makes concurrent and repeated pushes distinct."""
    parts = [encode_component(p) for p in (dag_id, run_id, task_id, str(map_index), key)]
    if prefix:
        parts.insert(0, "/".join(encode_component(p) for p in prefix.split("/") if p))
    return "/".join(parts) + f"/{uuid.uuid4().hex}{extension}"


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
        name = self.key.rsplit("/", 1)[-1]
        return name[name.index(".") :]

    @classmethod
    def parse(cls, value: object) -> Reference | None:
        """The reference in `value`, or None when `value` is not one of ours (plain XCom data)."""
        if not isinstance(value, str):
            return None
        match = _REFERENCE.match(value)
        if match is None:
            return None
        return cls(match["scheme"], match["bucket"], match["key"], match["sha256"])
