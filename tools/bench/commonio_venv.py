"""The venv in which common.io's backend runs on S3 for the benchmark.

common.io reaches ``s3://`` through s3fs, whose aiobotocore pins a botocore older than the one the
project's boto3 needs (requirements-dev.lock), so the two cannot share an environment. This venv has
Airflow and everything else at the project's pins and only the botocore family moved:
``commonio-s3.in`` names what it needs, ``commonio-s3.lock`` (in git) pins it, compiled with the
project's lock less :data:`RELAXED` as constraints, so re-pinning the project and then this lock keeps
the two in step. The benchmark builds the venv on first use with the project's uv and reuses it while
the lock and the Python are unchanged; a build that fails (no index, say) is reported, not raised.

    python -m tools.bench.commonio_venv          # build it now (what the benchmark does when needed)
    python -m tools.bench.commonio_venv --lock   # re-pin commonio-s3.lock after `make lock`
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.bench.config import PROJECT_ROOT

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "commonio-s3.in"
LOCK = HERE / "commonio-s3.lock"
PROJECT_LOCK = PROJECT_ROOT / "requirements-dev.lock"
# Where the venv goes unless this variable names another directory (the tests build throwaway ones).
VENV_ENV = "BENCH_COMMONIO_S3_VENV"
DEFAULT_VENV = PROJECT_ROOT / ".venv-commonio-s3"
# The project's pins that s3fs's aiobotocore cannot take; every other pin is the project's.
RELAXED = ("boto3", "botocore", "s3transfer")
STAMP = ".installed"
# A cold build downloads ~170 wheels (~150 MB); a build still running after this has hung.
BUILD_TIMEOUT_S = 900
LOCK_COMMAND = "python -m tools.bench.commonio_venv --lock"


class VenvUnavailable(RuntimeError):
    """The venv could not be built; the message says why, for the benchmark's "not measured" list."""


@dataclass(frozen=True)
class Venv:
    python: Path
    built_seconds: float | None  # None: it was there already, built from the same lock


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _fingerprint() -> str:
    """What the venv was built from: the lock and the Python that runs it."""
    digest = hashlib.sha256(LOCK.read_bytes())
    digest.update(f"{sys.executable} {sys.version}".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One build at a time per directory: a second benchmark waits for the first one's venv."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.flock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _messages(output: str) -> list[str]:
    """uv's error and its causes, one each: uv wraps a long cause (a URL) onto indented lines."""
    messages: list[str] = []
    for line in output.splitlines():
        text = line.strip()
        if not text:
            continue
        if messages and line[:1].isspace() and not re.match(r"(cause|caused by|hint|help):", text, re.I):
            messages[-1] += " " + text
        else:
            messages.append(text)
    return messages


def _run(what: str, command: list[str], deadline: float) -> None:
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise VenvUnavailable(f"{what} did not finish within {BUILD_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = _messages(proc.stderr or proc.stdout)
        # uv's first lines say what failed and on which URL, its last one the root cause.
        why = " / ".join(dict.fromkeys(lines[:2] + lines[-1:])) or "no output"
        raise VenvUnavailable(f"{what} exited with {proc.returncode}: {why}")


def ensure_venv(directory: Path | None = None) -> Venv:
    """The venv built from the lock (building it if missing or stale); VenvUnavailable if it cannot be."""
    directory = directory or venv_dir()
    python = directory / "bin" / "python"
    fingerprint = _fingerprint()
    stamp = directory / STAMP
    try:
        with _exclusive(directory):
            if stamp.is_file() and stamp.read_text() == fingerprint and python.exists():
                return Venv(python, None)
            began = time.monotonic()
            deadline = began + BUILD_TIMEOUT_S
            shutil.rmtree(directory, ignore_errors=True)
            uv = uv_binary()
            # The venv takes the Python running the benchmark, so both sides run the same interpreter.
            _run("uv venv", [uv, "venv", "--quiet", "--python", sys.executable, str(directory)], deadline)
            sync = [uv, "pip", "sync", "--quiet", "--python", str(python), str(LOCK)]
            _run(f"uv pip sync {LOCK.relative_to(PROJECT_ROOT)}", sync, deadline)
            stamp.write_text(fingerprint)
            return Venv(python, time.monotonic() - began)
    except VenvUnavailable as exc:
        # Half a venv must not pass for a built one next time (the stamp is written last anyway).
        shutil.rmtree(directory, ignore_errors=True)
        raise VenvUnavailable(
            f"not measured: the venv for common.io on S3 ({directory}, from "
            f"{LOCK.relative_to(PROJECT_ROOT)}) could not be built: {exc}"
        ) from None
    except (OSError, ImportError) as exc:
        raise VenvUnavailable(
            f"not measured: the venv for common.io on S3 ({directory}) could not be built: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def project_pins(relaxed: tuple[str, ...] = RELAXED) -> list[str]:
    """The project's pins (requirements-dev.lock) less the relaxed ones, one requirement a line."""
    pins = []
    for line in PROJECT_LOCK.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement and requirement.split("==", 1)[0].strip().lower() not in relaxed:
            pins.append(requirement)
    return pins


def compile_lock() -> None:
    """Re-pin commonio-s3.lock for Python 3.11 (the project's), as `make lock` does for the project."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "project-pins.txt"
        constraints.write_text("\n".join(project_pins()) + "\n", encoding="utf-8")
        command = [
            uv_binary(),
            "pip",
            "compile",
            str(REQUIREMENTS),
            "--constraint",
            str(constraints),
            "--output-file",
            str(LOCK),
            "--python-version",
            "3.11",
            # Annotations would name the temporary constraints file; the header names this command.
            "--no-annotate",
            "--custom-compile-command",
            LOCK_COMMAND,
            "--quiet",
        ]
        subprocess.run(command, check=True, timeout=BUILD_TIMEOUT_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.commonio_venv", description=__doc__)
    parser.add_argument("--lock", action="store_true", help="re-pin commonio-s3.lock instead of building")
    args = parser.parse_args(argv)
    if args.lock:
        compile_lock()
        print(f"wrote {LOCK}")
        return 0
    try:
        venv = ensure_venv()
    except VenvUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    how = "already built" if venv.built_seconds is None else f"built in {venv.built_seconds:.1f} s"
    print(f"{venv.python} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
