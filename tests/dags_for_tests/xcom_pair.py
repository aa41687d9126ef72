"""Test-only DAG: one producer pushes a value, one consumer pulls it and prints it.

The tests run it with `airflow dags test` against the local stores: with a dead endpoint (the push
fails), twice on one logical date (the re-run purges the first object), and with secrets in the
connection (the task log must not show them). No retries, so a failing run ends at once.
The value is taken from the run's conf so that each run can push something recognisable.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},
    params={"payload": "hello"},
    tags=["test"],
)
def xcom_pair() -> None:
    @task
    def produce() -> str:
        return str(get_current_context()["params"]["payload"])

    @task
    def consume(value: str) -> None:
        print(f"CONSUMED {value}")

    consume(produce())


xcom_pair()
