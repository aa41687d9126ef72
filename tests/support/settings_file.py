"""airflow_settings.yaml for the tests that read it, or a skip where the project is the image's copy.

The image holds the build context less `.dockerignore`, which leaves the settings file out (the Astro CLI
applies it from the host), so under `astro dev pytest` the file is absent and those tests skip with this
reason. In a git checkout the file is committed, and its absence is a failure, never a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = PROJECT_ROOT / "airflow_settings.yaml"


def settings_file() -> Path:
    if SETTINGS_FILE.is_file():
        return SETTINGS_FILE
    if (PROJECT_ROOT / ".git").exists():
        pytest.fail(f"{SETTINGS_FILE} is missing from this git checkout; it is part of the template")
    pytest.skip(
        f"{SETTINGS_FILE.name} is not in this copy of the project: .dockerignore leaves it out of the image"
        " (the Astro CLI applies it from the host)"
    )
