"""The scale series' linearity judgement (tools/bench/scale.py), a pure function of sizes and times."""

from __future__ import annotations

import math

import pytest

# tools.bench imports its statistics from pytest-benchmark, a dev-only package the Astro image lacks.
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark (requirements-dev.in) is not installed")

from tools.bench.config import LINEAR_FIT_FROM_ROWS, QUICK_SCALE_ROWS, SCALE_ROWS, TARGET_LINEAR_SLOPE
from tools.bench.scale import fitted_sizes, judge_linearity, loglog_slope


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_the_slope_of_a_power_law_is_its_exponent(power: float) -> None:
    points = [(n, 3e-7 * n**power) for n in (1e4, 1e5, 1e6, 1e7)]
    assert loglog_slope(points) == pytest.approx(power)


def test_the_slope_is_the_least_squares_fit_through_noisy_points() -> None:
    # log10 points (0, 0), (1, 1.2), (2, 1.8): slope = cov / var = 0.9.
    points = [(1.0, 1.0), (10.0, 10**1.2), (100.0, 10**1.8)]
    assert loglog_slope(points) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([(1e6, 1.0)], "at least two points"),
        ([(1e6, 1.0), (1e6, 2.0)], "two different sizes"),
        ([(1e5, 0.0), (1e6, 1.0)], "non-positive"),
        ([(0, 1.0), (1e6, 1.0)], "non-positive"),
    ],
)
def test_a_slope_that_cannot_be_fitted_is_refused(points: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loglog_slope(points)


def test_the_fit_leaves_out_sizes_below_the_bound_when_enough_remain() -> None:
    assert fitted_sizes(SCALE_ROWS) == [s for s in SCALE_ROWS if s >= LINEAR_FIT_FROM_ROWS]
    assert fitted_sizes(SCALE_ROWS) == [1_000_000, 3_000_000, 10_000_000]
    # A quick series has no two sizes that large: it is fitted over all of them.
    assert fitted_sizes(QUICK_SCALE_ROWS) == sorted(QUICK_SCALE_ROWS)
    assert fitted_sizes([10_000, 1_000_000]) == [10_000, 1_000_000]
    assert fitted_sizes([1_000_000, 10_000, 10_000_000]) == [1_000_000, 10_000_000]


def test_linear_time_passes_and_sub_or_super_linear_time_misses() -> None:
    low, high = TARGET_LINEAR_SLOPE
    assert low < 1 < high
    # Fixed costs below a million rows are outside the fit, so a series linear above them passes.
    linear = {10_000: 0.05, 100_000: 0.2, 1_000_000: 0.8, 3_000_000: 2.3, 10_000_000: 8.1}
    verdict = judge_linearity(linear)
    assert verdict["sizes"] == [1_000_000, 3_000_000, 10_000_000]
    assert verdict["slope"] == pytest.approx(loglog_slope([(n, linear[n]) for n in verdict["sizes"]]))
    assert verdict["status"] == "PASS"
    quadratic = judge_linearity({n: 1e-12 * n**2 for n in SCALE_ROWS})
    assert quadratic["slope"] == pytest.approx(2.0)
    assert quadratic["status"] == "MISS"
    flat = {n: 0.5 for n in SCALE_ROWS}
    assert judge_linearity(flat)["status"] == "MISS"


def test_the_bounds_are_inclusive() -> None:
    times = {1_000_000: 1.0, 10_000_000: 9.5}
    slope = judge_linearity(times)["slope"]
    assert slope == pytest.approx(math.log(9.5) / math.log(10))
    assert judge_linearity(times, bounds=(slope, slope))["status"] == "PASS"
    assert judge_linearity(times, bounds=(slope - 0.1, math.nextafter(slope, 0)))["status"] == "MISS"
    assert judge_linearity(times, bounds=(math.nextafter(slope, 2), slope + 0.1))["status"] == "MISS"


def test_missed_scale_targets_are_reported_but_not_profiled() -> None:
    # A series has no single round trip to profile: profiling one would build a frame of `rows`,
    # which a scale target does not have (None), and crash the run before it writes anything.
    from tools.bench.config import BenchConfig
    from tools.bench.profiling import profile_misses

    result = {
        "targets": [
            {
                "target": "scale: largest peak extra memory / value over the series (at 10,000 rows)",
                "store": "gcs",
                "rows": None,
                "status": "MISS",
                "link": "loopback",
            },
            {
                "target": "scale: log-log slope of time on rows, 1,000,000..10,000,000",
                "store": "gcs",
                "rows": 10_000_000,
                "status": "MISS",
                "link": "loopback",
            },
        ]
    }
    assert profile_misses(result, BenchConfig(), {}) == []
