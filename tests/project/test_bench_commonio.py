"""The benchmark's venv for common.io on S3 (tools/bench/commonio_venv.py): its lock keeps the project's
pins, it builds from the lock and answers, and a venv that cannot be built is reported as not measured."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# The benchmark's package imports pytest-benchmark and uv, dev-only packages the Astro image lacks.
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark (requirements-dev.in) is not installed")
pytest.importorskip("uv", reason="uv (requirements-dev.in) is not installed")

from tools.bench import commonio_venv
from tools.bench.config import BenchConfig

UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"  # the discard port: nothing listens, refused at once


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_lock_keeps_every_project_pin_but_the_botocore_family() -> None:
    venv = _pins(commonio_venv.LOCK)
    project = _pins(commonio_venv.PROJECT_LOCK)
    for needed in ("apache-airflow", "apache-airflow-providers-common-io", "s3fs", "pandas", "pyarrow"):
        assert needed in venv, f"{needed} missing from {commonio_venv.LOCK.name}"
    moved = {
        name: (project[name], version)
        for name, version in venv.items()
        if name in project and project[name] != version and name not in commonio_venv.RELAXED
    }
    assert not moved, f"re-pin with `{commonio_venv.LOCK_COMMAND}`: {moved} (project, venv)"
    # Airflow and the backend measured are the project's own, whatever else moved.
    for name in ("apache-airflow", "apache-airflow-providers-common-io", "apache-airflow-providers-amazon"):
        assert venv[name] == project[name]


@pytest.fixture
def unreachable_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """uv pointed at an index nobody serves, with no cache to fall back on; returns the venv's path."""
    for name in ("UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UV_DEFAULT_INDEX", UNREACHABLE_INDEX)
    monkeypatch.setenv("UV_NO_CACHE", "1")
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    venv = tmp_path / "venv-commonio-s3"
    monkeypatch.setenv(commonio_venv.VENV_ENV, str(venv))
    return venv


def test_a_venv_that_cannot_be_built_says_why(unreachable_index: Path) -> None:
    with pytest.raises(commonio_venv.VenvUnavailable) as caught:
        commonio_venv.ensure_venv()
    message = str(caught.value)
    assert message.startswith("not measured: the venv for common.io on S3"), message
    assert str(unreachable_index) in message and "commonio-s3.lock" in message
    assert "127.0.0.1:9" in message and "Connection refused" in message, message
    assert not unreachable_index.exists(), "half a venv was left behind"


def test_the_bench_lists_common_io_on_s3_as_not_measured_when_its_venv_cannot_be_built(
    unreachable_index: Path,
) -> None:
    from tools.bench.run import commonio_in_own_venv

    config = BenchConfig(rows=(1_000,), stores=("s3", "minio"))
    done = commonio_in_own_venv(config, ["s3", "minio"], {"s3": "bucket-a", "minio": "bucket-b"})
    assert done["timings"] == [] and done["memory_jobs"] == [] and done["python"] is None
    assert set(done["unavailable"]) == {("s3", "commonio"), ("minio", "commonio")}
    for reason in done["unavailable"].values():
        assert reason.startswith("not measured: ") and "Connection refused" in reason


@pytest.mark.slow
def test_the_lock_installs_into_a_fresh_venv_that_is_then_reused(tmp_path: Path) -> None:
    directory = tmp_path / "venv"
    built = commonio_venv.ensure_venv(directory)
    assert built.built_seconds is not None and built.python.exists()
    # The child's imports: common.io's backend on s3fs, and the project's bench code on top of them.
    probe = (
        "import s3fs, airflow.providers.common.io.xcom.backend, tools.bench.methods, tools.bench.memory; "
        "import fsspec; fsspec.get_filesystem_class('s3')"
    )
    root = commonio_venv.PROJECT_ROOT
    proc = subprocess.run(
        [str(built.python), "-c", probe], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = commonio_venv.ensure_venv(directory)
    assert again == commonio_venv.Venv(built.python, None), "a built venv was built again"


def test_a_cause_uv_wrapped_onto_two_lines_stays_one_message() -> None:
    # uv wraps a long cause at the terminal's width, here the URL that failed.
    output = (
        "error: Request failed after 3 retries in 4.8s\n"
        "  cause: Failed to fetch:\n"
        "         http://127.0.0.1:9/simple/opentelemetry-exporter-otlp-common/\n"
        "  cause: Connection refused (os error 111)\n"
    )
    assert commonio_venv._messages(output) == [
        "error: Request failed after 3 retries in 4.8s",
        "cause: Failed to fetch: http://127.0.0.1:9/simple/opentelemetry-exporter-otlp-common/",
        "cause: Connection refused (os error 111)",
    ]
