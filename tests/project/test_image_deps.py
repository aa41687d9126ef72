"""tools/image_deps.py: which wheel metadata counts as claiming the image's Python.

The check itself needs the package index and runs in `.ci/run` (`python -m tools.image_deps`); these
tests pin down its rules on metadata written here.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.tags import Tag

from tests.support.endpoints import closed_port
from tools import image_deps
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


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves FILES by path, as an index's file host would."""

    FILES: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.FILES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _entry(host: str, metadata: bytes, sha256: str) -> dict:
    _Files.FILES["/dbt_core-1.11.16-py3-none-any.whl.metadata"] = metadata
    return {
        "filename": "dbt_core-1.11.16-py3-none-any.whl",
        "url": f"{host}/dbt_core-1.11.16-py3-none-any.whl#sha256=00",
        "hashes": {"sha256": "00"},
        "core-metadata": {"sha256": sha256},
        "upload-time": "2025-01-01T00:00:00Z",
    }


def test_metadata_comes_from_the_index_metadata_file_and_is_checked(
    file_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_deps, "CACHE_DIR", tmp_path)
    body = DBT_CORE_METADATA.encode()
    metadata = image_deps.wheel_metadata(_entry(file_host, body, hashlib.sha256(body).hexdigest()))
    assert metadata.requires_python == ">=3.10"
    assert metadata.python_minors == ("3.10", "3.11", "3.12", "3.13")
    monkeypatch.setattr(image_deps, "CACHE_DIR", tmp_path / "empty")  # the first answer is cached
    with pytest.raises(image_deps.PackageIndexError, match=r"\.whl\.metadata: sha256 .* is not the index's"):
        image_deps.wheel_metadata(_entry(file_host, body + b"tampered", hashlib.sha256(body).hexdigest()))


def test_an_index_that_refuses_is_tried_a_bounded_number_of_times_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = []
    real_urlopen = urllib.request.urlopen

    def counted(*args: object, **kwargs: object) -> object:
        opened.append(args[0])
        return real_urlopen(*args, **kwargs)

    monkeypatch.setattr(image_deps.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(urllib.request, "urlopen", counted)
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/simple/dbt-core/"
        with pytest.raises(image_deps.PackageIndexError, match=rf"{re.escape(url)}: 4 attempts"):
            image_deps._get(url)
    assert len(opened) == image_deps.NETWORK_ATTEMPTS


def test_an_http_error_answer_is_final(file_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_deps.time, "sleep", lambda seconds: pytest.fail("an HTTP 404 was retried"))
    with pytest.raises(urllib.error.HTTPError, match="404"):
        image_deps._get(f"{file_host}/simple/no-such-project/")
