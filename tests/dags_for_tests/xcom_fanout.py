"""Test-only DAG: 200 mapped task instances each push a distinct value; one task pulls them all.

`fan_out` is mapped over a literal list, so the 200 pushes need no upstream XCom; `collect` receives
the lazy sequence of all 200 values (one pull per instance) and checks each against what its
instance must have pushed, so a lost, swapped or truncated value fails the run.
"""

from __future__ import annotations

import hashlib

import pendulum
from airflow.sdk import dag, task

WIDTH = 200


def expected(i: int) -> dict[str, object]:
    """What instance `i` pushes: distinct per instance, with a digest that proves it arrived whole."""
    blob = hashlib.sha256(str(i).encode()).hexdigest() * (1 + i % 7)
    return {"index": i, "blob": blob, "digest": hashlib.sha256(blob.encode()).hexdigest()}


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},
    tags=["test"],
)
def xcom_fanout() -> None:
    # A dict return would otherwise push each key as an XCom of its own (multiple_outputs).
    @task(multiple_outputs=False)
    def fan_out(i: int) -> dict[str, object]:
        return expected(i)

    @task
    def collect(values: list[dict[str, object]]) -> None:
        received = list(values)
        wrong = [i for i, value in enumerate(received) if value != expected(i)]
        if len(received) != WIDTH or wrong:
            raise ValueError(f"got {len(received)} values, wrong at indexes {wrong[:20]}")
        print(f"COLLECTED {len(received)} intact values")

    collect(fan_out.expand(i=list(range(WIDTH))))


xcom_fanout()
