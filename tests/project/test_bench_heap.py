"""The heap pass's counter (tools/bench/heap_peak.c): built here with the machine's C compiler, preloaded
into a Python whose every allocation goes through malloc, it must see each kind of allocation the
benchmark's values are made of, at its size, and its peak must be the instant's, not a sum."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# A part of the benchmark, whose packages (requirements-dev.in) the Astro image lacks.
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark (requirements-dev.in) is not installed")

from tools.bench.heap import REQUIRED_ENV, HeapCounter, HeapCounterError, built_counter, counted_environment

ROOT = Path(__file__).resolve().parents[2]
MB = 8_000_000

# Each case allocates MB bytes one way; the child prints the peak above the baseline and what is held.
CHILD = """
import gc, json, sys
import numpy as np, pyarrow as pa
from tools.bench.heap import HeapCounter

counter = HeapCounter()
n = int(sys.argv[1])

def grown():
    value = bytearray()
    while len(value) < n:
        value += b"x" * 65_536
    return value

cases = {
    "python bytes": lambda: b"y" * n,
    "numpy array": lambda: np.ones(n // 8),
    "arrow buffer": lambda: pa.allocate_buffer(n),
    "bytearray grown by appends": grown,
    "two halves then their join": lambda: b"".join([b"z" * (n // 2), b"w" * (n // 2)]),
}
out = {}
for _ in range(2):  # the first round takes the libraries' one-time allocations
    for name, make in cases.items():
        gc.collect()
        base = counter.current()
        counter.reset_peak()
        value = make()
        out[name] = {"peak": counter.peak() - base, "held": counter.current() - base}
        del value
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def library() -> Iterator[Path]:
    with built_counter() as built:
        yield built


def test_the_counter_sees_python_numpy_and_arrow_allocations_at_their_size(library: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(MB)],
        cwd=ROOT,
        env=counted_environment(library),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    slack = 256 * 1024  # the allocator's rounding and the interpreter's own small objects
    for name, figures in seen.items():
        expected_peak = 2 * MB if name == "two halves then their join" else MB
        if name == "bytearray grown by appends":
            # A bytearray keeps up to an eighth spare; each growth is a realloc, in place, by
            # mremap, or by a copy that holds the old block and the new one.
            assert MB <= figures["held"] <= MB * 9 // 8 + slack, (name, figures)
            assert figures["held"] <= figures["peak"] <= 2 * figures["held"], (name, figures)
            continue
        assert expected_peak <= figures["peak"] <= expected_peak + slack, (name, figures)
        assert MB <= figures["held"] <= MB + slack, (name, figures)


def test_a_process_without_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REQUIRED_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(HeapCounterError, match="PYTHONMALLOC"):
        HeapCounter()


def test_a_process_started_without_the_counter_preloaded_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # This very process: the environment is right, but the counter was not there from the start.
    for name, value in REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(HeapCounterError, match="LD_PRELOAD"):
        HeapCounter()
