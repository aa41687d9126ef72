"""common.io's backend on the S3-API stores, timed in a child process in its own venv (commonio_venv).

The parent (`tools.bench.run`) sends ``{"jobs": [{"store", "bucket", "rows"}], "repeat": n}`` on stdin;
the child, `<venv>/bin/python -m tools.bench.commonio_s3 OUT`, imports the project's own bench code
(the same frame from the same seed, the same `CommonIOMethod`, warm-up check and timing loop) and writes
one answer per job to OUT: ``{"runs": [[push_s, pull_s], ...], "problem": str | None}``, or
``{"error": why}`` where the warm-up failed, with the versions of the venv's storage stack. The parent
summarises the runs with the same statistics as every other method. It inherits the parent's
environment: the servers' connections, the buckets, the shaped link's namespace when there is one.
Memory is measured by the usual memory pass, started with this venv's Python.
"""

from __future__ import annotations

import json
import statistics
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.bench.child import ChildError, run_child

# Reported with the results: what common.io's S3 path ran on.
STACK = ("apache-airflow-providers-common-io", "s3fs", "aiobotocore", "botocore", "fsspec", "pyarrow")


class OwnVenvUnavailable(RuntimeError):
    """The venv could not be built, or its child did not answer; the message says why."""


def run_round_trips(jobs: list[dict[str, Any]], repeat: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the venv is (python, build time, versions) and one answer per job, or OwnVenvUnavailable."""
    # Imported here: `-m tools.bench.commonio_venv` builds it from the command line.
    from tools.bench.commonio_venv import VenvUnavailable, ensure_venv

    try:
        venv = ensure_venv()
    except VenvUnavailable as exc:
        raise OwnVenvUnavailable(str(exc)) from None
    request = {"jobs": jobs, "repeat": repeat}
    try:
        answer = run_child(
            "common.io child (own venv)", [str(venv.python), "-m", "tools.bench.commonio_s3"], request
        )
    except ChildError as exc:
        raise OwnVenvUnavailable(f"not measured: {exc}") from None
    if len(answer["results"]) != len(jobs):
        counts = f"{len(answer['results'])} results for {len(jobs)} jobs"
        raise OwnVenvUnavailable(f"not measured: the common.io child answered {counts}")
    info = {"python": str(venv.python), "built_seconds": venv.built_seconds, "versions": answer["versions"]}
    return info, answer["results"]


def describe_venv(info: dict[str, Any], stores: list[str]) -> str:
    """One line for the notes: where common.io ran on these stores, and what with."""
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    built = info["built_seconds"]
    how = "already built" if built is None else f"built in {built:.0f} s"
    return (
        f"common.io on {', '.join(stores)} ran in a venv of its own (tools/bench/commonio-s3.lock, {how}: "
        f"{versions}), in a child process after the in-process methods, so its runs are not "
        "interleaved with theirs"
    )


def _time_job(job: dict[str, Any], frame: Any, repeat: int) -> dict[str, Any]:
    import gc

    from tools.bench.config import STORE_SPECS
    from tools.bench.methods import CommonIOMethod, check_value, describe_error, freeze_heap, time_once

    method = CommonIOMethod(STORE_SPECS[job["store"]], job["bucket"])
    gc.unfreeze()
    try:
        _, _, value = time_once(method, frame)  # warm-up and check, as for the in-process methods
    except Exception as exc:
        return {"error": describe_error(exc)}
    # The Parquet bytes are the floor's reference only; common.io is checked against the frame.
    problem = check_value("commonio", frame, value, b"")
    del value
    freeze_heap()
    return {"runs": [time_once(method, frame)[:2] for _ in range(repeat)], "problem": problem}


def main(out: Path) -> int:
    from tools.bench.data import make_frame
    from tools.bench.methods import quiet_logs
    from tools.console import progress

    request = json.load(sys.stdin)
    results: list[dict[str, Any]] = []
    frame, frame_rows = None, None
    with quiet_logs():
        for job in request["jobs"]:
            if job["rows"] != frame_rows:
                frame, frame_rows = None, None  # one frame alive at a time
                frame, frame_rows = make_frame(job["rows"]), job["rows"]
            results.append(_time_job(job, frame, request["repeat"]))
            answer = results[-1]
            line = answer.get("error") or f"{statistics.median(p + q for p, q in answer['runs']):.3f}s"
            progress(f"[{job['store']}] {job['rows']:,} rows: commonio (own venv) {line}")
    versions = {name: metadata.version(name) for name in STACK}
    out.write_text(json.dumps({"versions": versions, "results": results}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    from tools.console import quiet_libraries

    quiet_libraries(False)
    sys.exit(main(Path(sys.argv[1])))
