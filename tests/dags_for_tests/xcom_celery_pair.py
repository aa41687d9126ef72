"""Test-only DAG: a DataFrame pushed on Celery worker w1 is pulled on worker w2 (tests/e2e/test_celery.py).

Each task names the queue only one worker listens on, so the two run on different "machines":
different hostname, HOME, working directory and temp dir (tools/celery_cluster.py). The producer
also pushes where it ran; the consumer compares the frame with a fresh copy of what was pushed,
exactly (dtypes, index, values, NaN/NA), and fails if both tasks ran in the same place.
"""

from __future__ import annotations

import os
import tempfile

import pandas as pd
import pendulum
from airflow.sdk import dag, get_current_context, task

from tools.celery_cluster import WORKERS

PRODUCER_QUEUE, CONSUMER_QUEUE = WORKERS


def expected_frame() -> pd.DataFrame:
    """The frame the producer pushes: the dtypes a round trip through a store most often loses."""
    return pd.DataFrame(
        {
            "n": pd.array([1, None, 3, 2**53 + 1], dtype="Int64"),
            "x": [0.1, float("nan"), -0.0, 1e300],
            "when": pd.date_range("2026-01-01 00:00:00.000001", periods=4, freq="37min", tz="Europe/Paris"),
            "label": pd.array(["a", None, "ü", ""], dtype="string"),
            "kind": pd.Categorical(["x", "y", "x", "z"]),
            "flag": [True, False, True, False],
        },
        index=pd.Index([10, 20, 30, 40], name="row"),
    )


def where_am_i() -> dict[str, str]:
    from airflow.sdk.api.client import get_hostname

    return {
        "hostname": get_hostname(),
        "home": os.environ["HOME"],
        "cwd": os.getcwd(),
        "tmp": tempfile.gettempdir(),
    }


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},
    tags=["test"],
)
def xcom_celery_pair() -> None:
    @task(queue=PRODUCER_QUEUE)
    def produce() -> pd.DataFrame:
        get_current_context()["ti"].xcom_push(key="where", value=where_am_i())
        return expected_frame()

    @task(queue=CONSUMER_QUEUE)
    def consume(frame: pd.DataFrame) -> None:
        pd.testing.assert_frame_equal(frame, expected_frame(), check_exact=True)
        there = get_current_context()["ti"].xcom_pull(task_ids="produce", key="where")
        here = where_am_i()
        shared = sorted(k for k in here if here[k] == there[k])
        if shared:
            raise AssertionError(f"producer and consumer share {shared}: {there} / {here}")
        print(f"PULLED exact frame {frame.shape} pushed on {there['hostname']} into {here['hostname']}")

    consume(produce())


xcom_celery_pair()
