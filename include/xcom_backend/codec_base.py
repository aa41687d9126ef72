"""What every codec is: the protocol the backend calls, what encode returns, and the refusal it raises.

Its own module so the format modules (codecs.py for JSON, numpy, Arrow, polars and bytes; frames.py
for pandas) share it without importing each other.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol


class Encoded(NamedTuple):
    data: bytes
    # What Airflow's database would hold instead, for codecs whose values may stay there.
    structure: Any = None


class Codec(Protocol):
    extension: str
    content_type: str
    in_database: bool  # a small value may stay in Airflow's DB as `Encoded.structure`
    compressible: bool  # the compression setting applies (not to formats compressed inside)

    def encode(self, value: Any) -> Encoded: ...

    def decode(self, data: bytes) -> Any: ...


class UnsupportedValue(TypeError):
    """The codec cannot represent the value exactly; the backend adds the task, key and type."""
