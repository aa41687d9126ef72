"""The value and frame catalogue on the stores that need no server (the table's rows with no
`server`), through a JSON and a pandas backend over each: the contract's first half, in seconds."""

from __future__ import annotations

import pytest

from tests.support.hostile_values import cases_for, check_round_trip
from tests.support.schemes import IN_PROCESS
from tests.support.xcom_calls import backend_for

# Pushes and pulls go through the real metadata DB (SQLite or PostgreSQL: XCOM_TEST_DB).
pytestmark = pytest.mark.usefixtures("xcom_table")

CASES = [
    pytest.param(scheme, pandas, factory, expected, id=f"{scheme}-{'pandas' if pandas else 'json'}-{case_id}")
    for scheme in IN_PROCESS
    for pandas in (False, True)
    for case_id, factory, expected in cases_for(pandas)
]


@pytest.mark.parametrize("threshold", ["0", "65536"], ids=lambda t: f"threshold{t}")
@pytest.mark.parametrize(("scheme", "pandas", "factory", "expected"), CASES)
def test_catalogue_round_trips_exactly_or_fails_clearly(
    scheme, pandas, factory, expected, threshold, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__XCOM_BACKEND__THRESHOLD_BYTES", threshold)
    check_round_trip(backend_for(scheme, pandas=pandas), factory, expected, in_bucket=threshold == "0")
