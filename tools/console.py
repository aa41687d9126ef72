"""What the project's tools (demo, benchmark, local servers) show on the terminal.

Importing Airflow configures logging with the root logger at INFO, so every SDK's request log (the
Azure SDK logs each HTTP request and response) would reach the screen. The tools keep library loggers
at WARNING unless ``--verbose`` asks for them, and report their own progress with ``progress``.
"""

from __future__ import annotations

import os
import sys
import time

_STARTED = time.monotonic()


def quiet_libraries(verbose: bool = False) -> None:
    """Library loggers at WARNING (INFO with ``verbose``), unless the user set Airflow's level.

    Airflow's loggers (structlog, which stdlib levels do not reach) and the root handler the SDKs log
    into both take ``[logging] logging_level``, applied when Airflow configures logging: it is set
    here and Airflow's logging configured again, since importing the project's code has imported
    Airflow already. Child processes started through ``tools.dagrun`` get their own settings.
    """
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    from airflow.logging_config import configure_logging

    configure_logging()


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the tool started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)
