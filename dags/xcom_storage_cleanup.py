"""
## XCom storage cleanup: delete XCom objects that nothing will read again

For the object-store XCom backend configured in `AIRFLOW__CORE__XCOM_BACKEND` (every store of it:
both copies for the mirror backend), this DAG lists the objects under the XCom key prefix
(`AIRFLOW__XCOM_BACKEND__KEY_PREFIX`, default `xcom`) and deletes

- **expired** objects, last modified more than `retention_days` ago, whether or not an XCom row
  still points at them (a later pull of such an XCom fails with `XComObjectNotFound`), and
- **orphaned** objects, older than `orphan_grace_hours` and referenced by no XCom row: their rows
  were removed by `airflow db clean` or with their DAG run, replaced when the task re-ran and the
  purge of the old object failed, or never written because the task died after the upload.

Objects younger than the grace period are always kept (a running task may have uploaded its value
and not yet written its row), and keys outside the backend's layout are never touched. The prefix
must belong to this Airflow alone: another deployment's objects under it would look like orphans.

**It is a dry run unless `dry_run` is false**: it reports what it would delete and deletes nothing.
Trigger it with `{"dry_run": false}` to delete, or set `XCOM_CLEANUP_DRY_RUN=false` in the
environment to make that the default, scheduled runs included. Deletions go in batches of
`batch_size`; the task log and the task's return value report the counts and bytes per store.

The XCom rows are read through the Task SDK, as every Airflow 3 task reads XComs (tasks cannot use
the metadata DB directly): one request per task, run and key. A bucket lifecycle rule on the prefix
(docs/operating.md) is the cheaper way to enforce retention on large buckets; keep this DAG for the
orphans, which no lifecycle rule can tell apart.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

log = logging.getLogger(__name__)

# Read when the DAG is parsed: an environment variable costs nothing there, unlike a Variable.
DRY_RUN_BY_DEFAULT = os.environ.get("XCOM_CLEANUP_DRY_RUN", "true").strip().lower() != "false"


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two cleanups listing the same bucket would only race each other
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["xcom", "maintenance"],
    params={
        "dry_run": Param(
            DRY_RUN_BY_DEFAULT,
            type="boolean",
            description="Only report what would be deleted. Set to false to delete.",
        ),
        "retention_days": Param(
            30,
            type="integer",
            minimum=1,
            description="Delete XCom objects last modified more than this many days ago.",
        ),
        "orphan_grace_hours": Param(
            2,
            type="number",
            minimum=0,
            description="Keep objects younger than this even when no XCom row references them yet.",
        ),
        "batch_size": Param(
            500, type="integer", minimum=1, maximum=10000, description="Deletions per batch."
        ),
    },
)
def xcom_storage_cleanup() -> None:
    # The report is one XCom; a dict return would otherwise push each key on its own.
    @task(multiple_outputs=False)
    def clean_xcom_storage() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from include.xcom_backend.cleanup import configured_stores, run_cleanup, sdk_reference_lookup

        params = get_current_context()["params"]
        try:
            stores = configured_stores()
        except ValueError as exc:
            raise AirflowSkipException(str(exc)) from None
        report = run_cleanup(
            stores=stores,
            lookup=sdk_reference_lookup(),
            retention=timedelta(days=params["retention_days"]),
            grace=timedelta(hours=params["orphan_grace_hours"]),
            dry_run=params["dry_run"],
            batch_size=params["batch_size"],
        )
        totals = report["totals"]
        log.info(
            "%s: %d objects scanned, %d expired, %d orphaned, %d deleted (%d bytes), %d failed",
            "Dry run" if report["dry_run"] else "Cleanup",
            totals["scanned"],
            totals["expired"],
            totals["orphaned"],
            totals["deleted"],
            totals["deleted_bytes"],
            totals["failed"],
        )
        if totals["failed"]:
            # Fail so that the retries (and alerting) see it; what was deleted stays deleted.
            raise RuntimeError(f"{totals['failed']} XCom objects could not be deleted; see the log")
        return report

    clean_xcom_storage()


xcom_storage_cleanup()
