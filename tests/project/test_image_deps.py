"""tools/image_deps.py: which wheel metadata counts as claiming the image's Python.

The check itself needs the package index and runs in `.ci/run` (`python -m tools.image_deps`); these
tests pin down its rules on metadata written here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.tags import Tag

from tools.astro_image import DockerfileError, runtime_image
from tools.image_deps import WheelMetadata, package_sets, parse_metadata, pick_wheel, problems, supported_tags

DBT_CORE_METADATA = """Metadata-Version: 2.4
Name: dbt-core
Version: 1.11.16
Classifier: Programming Language :: Python
Classifier: Programming Language :: Python :: 3.10
Classifier: Programming Language :: Python :: 3.11
Classifier: Programming Language :: Python :: 3.12
Classifier: Programming Language :: Python :: 3.13
Classifier: Programming Language :: Python :: 3 :: Only
Requires-Python: >=3.10

long description
"""


def test_metadata_yields_requires_python_and_listed_minors() -> None:
    metadata = parse_metadata("dbt_core-1.11.16-py3-none-any.whl", DBT_CORE_METADATA, "2026-10-14")
    assert metadata.requires_python == ">=3.10"
    assert metadata.python_minors == ("3.10", "3.11", "3.12", "3.13")


def test_own_pin_that_omits_a_python_released_before_it_is_flagged() -> None:
    metadata = parse_metadata("dbt_core-1.11.16-py3-none-any.whl", DBT_CORE_METADATA, "2026-10-14")
    assert problems(metadata, "3.12") == []
    [(problem, note)] = problems(metadata, "3.14")
    assert not note
    assert "list Python 3.10, 3.11, 3.12, 3.13 but not 3.14" in problem


def test_classifiers_older_than_the_python_are_only_a_note() -> None:
    metadata = WheelMetadata("text_unidecode-1.3-py2.py3-none-any.whl", None, ("3.4", "3.7"), "2019-08-30")
    [(problem, note)] = problems(metadata, "3.12")
    assert note and "before Python 3.12 was released (2023-10-02)" in problem


def test_a_dependency_of_airflow_is_a_note_but_its_requires_python_fails() -> None:
    metadata = WheelMetadata(
        "outcome-1.3.0.post0-py2.py3-none-any.whl", ">=3.7", ("3.7", "3.10"), "2023-10-26"
    )
    [(_, note)] = problems(metadata, "3.12", own_pin=False)
    assert note
    excluded = WheelMetadata("old-1.0-py3-none-any.whl", ">=3.8,<3.12", (), "2024-01-01")
    [(problem, note)] = problems(excluded, "3.12", own_pin=False)
    assert not note and "excludes Python 3.12" in problem


def test_no_classifiers_and_an_open_requires_python_claim_every_python() -> None:
    assert problems(WheelMetadata("x-1-py3-none-any.whl", None, (), ""), "3.14") == []


def test_wheel_choice_follows_the_target_architecture_and_python() -> None:
    files = [
        {"filename": f"duckdb-1.5.6-cp312-cp312-manylinux_2_27_{arch}.manylinux_2_28_{arch}.whl"}
        for arch in ("x86_64", "aarch64")
    ] + [
        {"filename": "duckdb-1.5.6-cp313-cp313-manylinux_2_28_x86_64.whl"},
        {"filename": "duckdb-1.5.6-cp312-cp312-macosx_11_0_arm64.whl"},
        {"filename": "duckdb-1.5.6.tar.gz"},
        {"filename": "duckdb-1.5.5-cp312-cp312-manylinux_2_28_aarch64.whl"},
    ]
    chosen = pick_wheel(files, "duckdb", "1.5.6", supported_tags("3.12", "aarch64"))
    assert chosen == files[1]
    assert pick_wheel(files, "duckdb", "1.5.6", supported_tags("3.14", "x86_64")) is None
    assert Tag("py3", "none", "any") in supported_tags("3.12", "x86_64")


def test_sets_are_airflow_with_requirements_and_the_dbt_lock() -> None:
    airflow_set, dbt_set = package_sets()
    assert airflow_set.requirements[0] == f"apache-airflow=={runtime_image().airflow}"
    assert {"minio", "pandas", "astronomer-cosmos", "apache-airflow"} <= airflow_set.own_pins
    assert dbt_set.own_pins is None  # every line of the lock is this project's pin


@pytest.mark.parametrize(
    ("line", "python"),
    [
        ("FROM astrocrpublic.azurecr.io/runtime:3.3-8", "3.14"),
        ("FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.13", "3.13"),
    ],
)
def test_image_python_comes_from_the_from_line(tmp_path: Path, line: str, python: str) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"{line}\nRUN true\n")
    assert runtime_image(dockerfile).python == python


@pytest.mark.parametrize(
    "line",
    [
        "FROM python:3.12",
        "FROM astrocrpublic.azurecr.io/runtime:3.3-99",
        "FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.11",
    ],
)
def test_unknown_images_are_refused_by_name(tmp_path: Path, line: str) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"{line}\n")
    with pytest.raises(DockerfileError, match=line.split()[1].rpartition(":")[2].split("-python")[0]):
        runtime_image(dockerfile)
