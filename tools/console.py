"""What the project's tools (demo, benchmark, local servers) show on the terminal.

Importing Airflow configures logging with the root logger at INFO, so every SDK's request log (the
Azure SDK logs each HTTP request and response) would reach the screen. The tools keep library loggers
at WARNING unless ``--verbose`` asks for them, and report their own progress with ``progress``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_STARTED = time.monotonic()


def quiet_libraries(verbose: bool = False) -> None:
    """Library loggers at WARNING (INFO with ``verbose``); call it before anything imports Airflow.

    Airflow's loggers (structlog, which stdlib levels do not reach) take their level from
    ``[logging] logging_level`` when Airflow is first imported, so it is set here unless the user
    set it; child processes started through ``tools.dagrun`` get their own settings, not this one.
    """
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", level)
    import airflow  # noqa: F401  (configures logging when first imported)

    # The SDKs log through stdlib loggers into the root handler Airflow installed.
    logging.getLogger().setLevel(level)


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the tool started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)
