"""The value and frame catalogue on the stores that need no server (the table's rows with no
`server`), through a JSON and a pandas backend over each: the contract's first half, in seconds."""

from __future__ import annotations

import pytest

from tests.support.hostile_values import cases_for, check_round_trip
from tests.support.schemes import IN_PROCESS
from tests.support.xcom_calls import backend_for

CASES = [
    pytest.param(scheme, pandas, factory, expected, id=f"{scheme}-{'pandas' if pandas else 'json'}-{case_id}")
    for scheme in IN_PROCESS
    for pandas in (False, True)
    for case_id, factory, expected in cases_for(pandas)
]


@pytest.mark.parametrize(("scheme", "pandas", "factory", "expected"), CASES)
def test_catalogue_round_trips_exactly_or_fails_clearly(scheme, pandas, factory, expected):
    check_round_trip(backend_for(scheme, pandas=pandas), factory, expected)
