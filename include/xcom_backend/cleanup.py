"""Finding and deleting XCom objects that nothing will read again; run by dags/xcom_storage_cleanup.py.

Two kinds of object go, and only objects whose key has this project's layout (under the key prefix,
`<dag>/<run>/<task>/<map_index>/<key>/<uuid>.<ext>`), so nothing else in a shared bucket is touched:

* expired: last modified longer ago than the retention period, whether or not a row still points
  at it (the same rule a bucket lifecycle rule applies; a later pull fails with XComObjectNotFound);
* orphaned: older than a grace period and not referenced by any XCom row of its task. The row was
  deleted (`airflow db clean`, a deleted DAG run), replaced (the task re-ran and the purge of the
  old object failed), or never written (the task died between the upload and the row).

Younger objects are always kept: a task may have uploaded its value and not yet written its row.

Which rows exist is asked through a `ReferenceLookup`, per (dag, run, task, key): the object key
says which, because it is built from those ids (`reference.object_key`). In Airflow 3 a task cannot
use the metadata DB's ORM, so inside a task the lookup goes through the Task SDK to the API server
(`sdk_reference_lookup`), the same call a mapped task's lazy sequence of XComs makes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from include.xcom_backend.errors import XComStorageError
from include.xcom_backend.reference import Reference, XComGroup, is_xcom_object, key_prefix, parse_object_key
from include.xcom_backend.registry import open_store
from include.xcom_backend.settings import Settings
from include.xcom_backend.stores.base import ObjectStore, StoredObject

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000  # groups remembered at once; keys are listed in order, so groups arrive together

# (dag_id, run_id, task_id, key) -> the object keys the rows of that group reference now.
ReferenceLookup = Callable[[XComGroup], Collection[str]]


# The numbers a report counts, in the order it lists them; `<name>_bytes` beside a count sums sizes.
COUNTERS = (
    "scanned",
    "scanned_bytes",
    "expired",
    "expired_bytes",
    "orphaned",
    "orphaned_bytes",
    "kept_young",
    "not_xcom",
    "unknown_ids",
    "lookups",
    "deleted",
    "deleted_bytes",
    "failed",
)


@dataclass
class CleanupReport:
    """What one store held under the prefix, what was to go, and what went: ``report.scanned``,
    ``report.expired_bytes``, ... for every name in COUNTERS."""

    store: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    examples: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> int:
        counts = self.__dict__.get("counts", {})
        if name in counts:
            return int(counts[name])
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def count(self, name: str, objects: int = 1, size: int | None = None) -> None:
        """Add ``objects`` to the counter ``name``, and ``size`` bytes to ``<name>_bytes``."""
        self.counts[name] += objects
        if size is not None:
            self.counts[f"{name}_bytes"] += size

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "dry_run": self.dry_run, **self.counts, "examples": list(self.examples)}

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        done = self.expired + self.orphaned if self.dry_run else self.deleted
        done_bytes = self.expired_bytes + self.orphaned_bytes if self.dry_run else self.deleted_bytes
        text = (
            f"{self.store}: scanned {self.scanned} objects ({self.scanned_bytes} bytes); {verb} {done} "
            f"({done_bytes} bytes): {self.expired} expired ({self.expired_bytes} bytes), {self.orphaned} "
            f"orphaned ({self.orphaned_bytes} bytes); kept {self.kept_young} younger than the grace "
            f"period, {self.not_xcom} not XCom objects, {self.unknown_ids} with ids the key cannot give"
        )
        return text + (f"; {self.failed} deletions failed" if self.failed else "")


def clean_store(
    store: ObjectStore,
    *,
    lookup: ReferenceLookup,
    retention: timedelta,
    grace: timedelta,
    prefix: str | None = None,
    dry_run: bool = True,
    batch_size: int = 500,
    now: datetime | None = None,
    workers: int = 8,
) -> CleanupReport:
    """List ``store`` under the XCom prefix and delete (unless ``dry_run``) what is expired or orphaned.

    Deletions go in batches of ``batch_size`` while the listing goes on, so memory stays flat however
    many objects the bucket holds; a failed deletion is counted and logged, and left for the next run.
    """
    if grace > retention:
        raise ValueError(
            f"the orphan grace period ({grace}) must not exceed the retention period ({retention})"
        )
    prefix = Settings.from_env().key_prefix if prefix is None else prefix
    now = now or datetime.now(UTC)
    report = CleanupReport(store=store.url(key_prefix(prefix)), dry_run=dry_run)
    referenced: dict[XComGroup, frozenset[str]] = {}

    def doomed() -> Iterator[StoredObject]:
        for item in store.list(key_prefix(prefix)):
            report.count("scanned", size=item.size)
            reason = _judge(item, prefix, now, retention, grace, lookup, referenced, report)
            if reason is not None:
                if len(report.examples) < 20:
                    report.examples.append(f"{reason}: {item.key}")
                yield item

    for number, batch in enumerate(_batches(doomed(), batch_size), start=1):
        if dry_run:
            log.info("Batch %d: would delete %d objects (%d bytes)", number, len(batch), _size(batch))
            continue
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batch)))) as pool:
            outcomes = list(pool.map(lambda item: _delete(store, item), batch))
        gone = [item for item, ok in zip(batch, outcomes, strict=True) if ok]
        report.count("deleted", len(gone), size=_size(gone))
        report.count("failed", len(batch) - len(gone))
        log.info("Batch %d: deleted %d of %d objects (%d bytes)", number, len(gone), len(batch), _size(gone))
    log.info("%s", report.summary())
    return report


def _judge(
    item: StoredObject,
    prefix: str,
    now: datetime,
    retention: timedelta,
    grace: timedelta,
    lookup: ReferenceLookup,
    referenced: dict[XComGroup, frozenset[str]],
    report: CleanupReport,
) -> str | None:
    """Why ``item`` should go ("expired", "orphaned"), or None to keep it; counts it in ``report``."""
    if not is_xcom_object(item.key, prefix):
        report.count("not_xcom")
        return None
    modified = item.last_modified
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)  # stores report UTC; some clients drop the zone
    age = now - modified
    if age >= retention:
        report.count("expired", size=item.size)
        return "expired"
    if age < grace:
        report.count("kept_young")
        return None
    parsed = parse_object_key(item.key, prefix)
    if parsed is None:
        report.count("unknown_ids")  # cannot ask for its row; retention removes it in time
        return None
    group, _ = parsed
    if group not in referenced:
        if len(referenced) >= _CACHE_LIMIT:
            referenced.clear()
        referenced[group] = frozenset(lookup(group))
        report.count("lookups")
    if item.key in referenced[group]:
        return None
    report.count("orphaned", size=item.size)
    return "orphaned"


def _batches(items: Iterable[StoredObject], size: int) -> Iterator[list[StoredObject]]:
    batch: list[StoredObject] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _size(items: Iterable[StoredObject]) -> int:
    return sum(item.size for item in items)


def _delete(store: ObjectStore, item: StoredObject) -> bool:
    try:
        store.delete(item.key)
    except XComStorageError as exc:
        log.warning("Could not delete %s: %s", store.url(item.key), exc)
        return False
    return True


# --- what the maintenance DAG uses ------------------------------------------------------------------


def configured_stores(backend: str | None = None) -> list[ObjectStore]:
    """The stores of an XCom backend class, in write order: ``backend`` (a dotted path), or the
    configured one (AIRFLOW__CORE__XCOM_BACKEND) as Airflow's own resolver finds it.

    Raises ValueError when the backend is not one of this project's object-store backends (e.g.
    Airflow's default, which keeps XComs in the metadata DB): then there is nothing to clean.
    """
    from airflow.sdk.execution_time.xcom import resolve_xcom_backend

    from include.xcom_backend.backend import ObjectStoreXComBackend

    cls: Any = None
    if backend is None:
        cls = resolve_xcom_backend()
        backend = f"{cls.__module__}.{cls.__qualname__}"
    elif backend:
        module, _, name = backend.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None) if module else None
    if not (isinstance(cls, type) and issubclass(cls, ObjectStoreXComBackend) and cls.stores):
        raise ValueError(
            f"the configured XCom backend {backend or '(Airflow default)'!r} is not one of this project's "
            "object-store backends; it keeps no objects to clean"
        )
    return [open_store(scheme) for scheme in cls.stores]


def sdk_reference_lookup() -> ReferenceLookup:
    """A lookup for use inside a running task: asks the API server through the Task SDK.

    One request per group returns the stored value of every map index at once; the values are the
    reference strings as the DB holds them, so no object is read.
    """
    from airflow.sdk.execution_time.comms import GetXComSequenceSlice, XComSequenceSliceResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    def lookup(group: XComGroup) -> set[str]:
        answer = SUPERVISOR_COMMS.send(
            GetXComSequenceSlice(
                key=group.key,
                dag_id=group.dag_id,
                run_id=group.run_id,
                task_id=group.task_id,
                start=None,
                stop=None,
                step=None,
            )
        )
        if not isinstance(answer, XComSequenceSliceResult):
            # Never guess: an object is deleted only when its rows were read successfully.
            raise RuntimeError(f"the API server did not list the XComs of {group}: {answer!r}")
        return {reference.key for value in answer.root if (reference := Reference.parse(value))}

    return lookup


def run_cleanup(
    *,
    lookup: ReferenceLookup,
    retention: timedelta,
    grace: timedelta,
    dry_run: bool = True,
    batch_size: int = 500,
    stores: list[ObjectStore] | None = None,
) -> dict[str, Any]:
    """Clean every store of the configured backend; the per-store reports and their totals."""
    reports = [
        clean_store(
            store, lookup=lookup, retention=retention, grace=grace, dry_run=dry_run, batch_size=batch_size
        )
        for store in (configured_stores() if stores is None else stores)
    ]
    totals = {
        name: sum(getattr(report, name) for report in reports)
        for name in ("scanned", "expired", "orphaned", "deleted", "deleted_bytes", "failed")
    }
    return {"dry_run": dry_run, "totals": totals, "stores": [report.as_dict() for report in reports]}
