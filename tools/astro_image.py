"""What the Astro Runtime image is, read from the Dockerfile: build, Python and the Airflow it ships.

The Dockerfile's FROM line is the one place the image is chosen; the dependency check
(tools/image_deps.py), the `astro dev pytest` reproduction (tools/astro_pytest.py) and the layout tests
read it from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
RUNTIME_REGISTRY = "astrocrpublic.azurecr.io/runtime"

# Astro Runtime build -> the Apache Airflow version it ships and its default Python. From Astronomer's
# runtime catalog (updates.astronomer.io/astronomer-runtime, as cut into the Astro CLI's test data on
# 2026-09-25); docs/astro-runtime.md has the sources. Add a row before moving the Dockerfile to a build.
RUNTIME_AIRFLOW = {
    "3.3-1": "3.3.0",
    "3.3-2": "3.3.0",
    "3.3-8": "3.3.2",
}
RUNTIME_DEFAULT_PYTHON = {"3.3-1": "3.14", "3.3-2": "3.14", "3.3-8": "3.14"}
# Every Runtime 3.3 build ships these Pythons; a `-python-3.N` tag selects one of them.
RUNTIME_PYTHONS = ("3.12", "3.13", "3.14")

_TAG = re.compile(r"^(?P<build>\d+\.\d+-\d+)(?:-python-(?P<python>\d+\.\d+))?$")


class DockerfileError(ValueError):
    """The Dockerfile's FROM line does not name a known Astro Runtime image."""


@dataclass(frozen=True)
class RuntimeImage:
    image: str
    build: str
    python: str
    airflow: str

    @property
    def python_pinned(self) -> bool:
        """True when the tag selects the Python, rather than taking the build's default."""
        return self.image.endswith(f"-python-{self.python}")


def runtime_image(dockerfile: Path = DOCKERFILE) -> RuntimeImage:
    """Parse the single FROM line of the Dockerfile into the Runtime build, its Python and its Airflow."""
    froms = [
        line.split()[1:]
        for line in dockerfile.read_text(encoding="utf-8").splitlines()
        if line.strip().upper().startswith("FROM ")
    ]
    if len(froms) != 1 or not froms[0]:
        raise DockerfileError(f"{dockerfile}: expected exactly one FROM line, found {froms}")
    image = froms[0][0]
    registry, _, tag = image.rpartition(":")
    if registry != RUNTIME_REGISTRY:
        raise DockerfileError(f"{dockerfile}: {image} is not an Astro Runtime 3 image ({RUNTIME_REGISTRY})")
    match = _TAG.match(tag)
    if not match:
        raise DockerfileError(f"{dockerfile}: tag {tag!r} is not of the form 3.3-8 or 3.3-8-python-3.12")
    build = match["build"]
    if build not in RUNTIME_AIRFLOW:
        raise DockerfileError(
            f"{dockerfile}: runtime {build} is not in RUNTIME_AIRFLOW (tools/astro_image.py); add it"
        )
    python = match["python"] or RUNTIME_DEFAULT_PYTHON[build]
    if python not in RUNTIME_PYTHONS:
        raise DockerfileError(f"{dockerfile}: Runtime {build} ships Python {RUNTIME_PYTHONS}, not {python}")
    return RuntimeImage(image=image, build=build, python=python, airflow=RUNTIME_AIRFLOW[build])


def release(version: str) -> str:
    """The public release of a version string: Astronomer's builds carry a local suffix (3.3.2+astro.1)."""
    return Version(version).public


def same_release(installed: str, expected: str) -> bool:
    """True when `installed` is `expected`, give or take a local build suffix such as `+astro.1`."""
    return release(installed) == release(expected)
