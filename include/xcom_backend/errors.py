"""The errors the XCom backends raise: one class per way a store can fail, each naming what failed.

Messages never carry a secret: the stores build them from bucket, key, endpoint and connection id
only, and pass the SDK's own message through `redact` first (Azure puts SAS signatures in URLs).
"""

from __future__ import annotations

import re

_SECRET_PATTERNS = [
    # Signatures in SAS tokens and presigned URLs (Azure, S3, GCS), and connection-string fields.
    re.compile(
        r"(?i)\b(sig|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
        r"x-goog-credential|AccountKey|SharedAccessSignature|SharedAccessKey|password|secret|token)"
        r"=[^&;\s'\"]+"
    ),
]
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*)['\"]?[^'\"\n,}]+")


def redact(text: str, limit: int = 300) -> str:
    """Remove credentials from an SDK message and keep it short enough for a task log line."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1=***", text)
    text = _AUTH_HEADER.sub(r"\1***", text)
    return text if len(text) <= limit else text[:limit] + "…"


class XComStorageError(RuntimeError):
    """Base class: the value could not be written to or read from the object store.

    ``fields`` become attributes, so a handler can tell which bucket, reference or endpoint failed."""

    def __init__(self, message: str, **fields: str | None) -> None:
        for name, field in fields.items():
            setattr(self, name, field)
        super().__init__(message)


class XComObjectNotFound(XComStorageError, FileNotFoundError):
    """The object a reference points to does not exist (deleted out of band, or lifecycle-expired)."""

    def __init__(self, reference: str, bucket: str) -> None:
        message = (
            f"XCom object not found: {reference} (bucket {bucket!r}). It was deleted or expired after the "
            "XCom was written; re-run the upstream task to produce it again."
        )
        super().__init__(message, reference=reference, bucket=bucket)


class XComBucketNotFound(XComStorageError):
    """The configured bucket or container does not exist."""

    def __init__(self, bucket: str, connection: str, setting: str = "") -> None:
        where = f"with {setting}" if setting else "with the bucket setting documented in .env.example"
        fix = f"Create it, or point the backend at an existing one {where}."
        super().__init__(
            f"XCom bucket {bucket!r} does not exist (connection {connection}). {fix}", bucket=bucket
        )
        self.connection = connection


class XComAccessDenied(XComStorageError):
    """The store refused the credentials, or they lack a permission on the bucket."""

    def __init__(self, bucket: str, connection: str, detail: str = "") -> None:
        self.bucket = bucket
        self.connection = connection
        suffix = f": {redact(detail)}" if detail else ""
        super().__init__(
            f"Access to XCom bucket {bucket!r} was refused for connection {connection}{suffix}. "
            "Check the connection's credentials and the identity's permissions on the bucket."
        )


class XComStoreUnreachable(XComStorageError, ConnectionError):
    """The store's endpoint did not answer (or answered that it is busy), on every attempt."""

    def __init__(self, endpoint: str, detail: str = "", reference: str | None = None) -> None:
        self.endpoint = endpoint
        self.reference = reference
        self.detail = redact(detail)  # kept for re-raising with the reference, never with a secret
        what = f" while reading {reference}" if reference else ""
        suffix = f": {self.detail}" if detail else ""
        super().__init__(f"XCom store at {endpoint} is unreachable{what}{suffix}")


class XComIntegrityError(XComStorageError):
    """The bytes read back do not match the checksum recorded when the value was written."""

    def __init__(self, reference: str, expected: str, actual: str) -> None:
        self.reference = reference
        super().__init__(
            f"XCom object {reference} is corrupted: its sha256 is {actual}, expected {expected}. "
            "The object was changed or truncated after it was written; re-run the upstream task."
        )


class XComReferenceError(XComStorageError, ValueError):
    """A value looked like one of this project's references but cannot be resolved."""
