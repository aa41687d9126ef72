"""The benchmark's child processes (the memory pass, the shaped-link pass): a request as JSON on stdin,
the answer as JSON in a file named by the last argument (stdout belongs to the libraries as much as to
the child), the parent's environment, and a bound on the time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tools.bench.config import PROJECT_ROOT

# A million-row frame takes seconds per job; ten million, about a minute.
TIMEOUT_S = 3 * 3600


class ChildError(RuntimeError):
    """A child failed or died; the message names which and how (its output is above it)."""


def run_child(what: str, command: list[str], request: Any, env: dict[str, str] | None = None) -> Any:
    """Run `command` + [answer file] with `request` on stdin, in `env` (by default this process's
    environment); return the answer it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answer.json"
        proc = subprocess.run(
            [*command, str(out)],
            input=json.dumps(request),
            text=True,
            cwd=PROJECT_ROOT,
            env=os.environ.copy() if env is None else env,
            timeout=TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            how = (
                f"died of {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0
                else f"exited with {proc.returncode}"
            )
            raise ChildError(f"the {what} {how}; its output is above")
        return json.loads(out.read_text(encoding="utf-8"))
