"""tools/astro_pytest.py reads .dockerignore and the env file the way Docker does.

The whole reproduction (`make astro-pytest`) runs in `.ci/run`; these tests pin down the two formats it
has to read exactly as Docker would, on files written here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.astro_pytest import (
    AstroPytestError,
    copy_build_context,
    is_ignored,
    parse_dockerignore,
    parse_env_file,
    pytest_pin,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        (".env", True),
        (".env.example", False),
        ("airflow_settings.yaml", True),
        ("logs", True),
        ("logs/scheduler/latest.log", True),  # inside an ignored directory
        ("dags/logs.py", False),
        ("astro", True),
        ("dags/astro", False),  # a bare name matches at the root only
        ("__pycache__/x.pyc", True),
        ("include/xcom_backend/__pycache__/core.cpython-312.pyc", True),  # **/ spans folders
        ("include/pokemon.duckdb", True),
        ("pokemon.duckdb", True),  # **/ also matches no folder at all
        (".astro/config.yaml", False),
        (".astro/config.local.yml", True),
        (".astro/test_dag_integrity_default.py", False),
        ("dbt/pokemon/target/manifest.json", True),
        ("dbt/pokemon/models/staging/stg_pokemon.sql", False),
        ("node_modules/azurite/package.json", True),
        (".venv/bin/python", True),
        (".venv-dbt/bin/dbt", True),
        ("tools/servers/seaweedfs.py", False),
    ],
)
def test_the_projects_dockerignore_as_docker_reads_it(path: str, ignored: bool) -> None:
    patterns = parse_dockerignore((PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8"))
    assert is_ignored(path, patterns) is ignored


def test_later_exceptions_bring_files_back_and_order_matters() -> None:
    patterns = parse_dockerignore("# comment\n/docs/\n!docs/keep.md\n*.md\n!README.md\n")
    assert is_ignored("docs/other.txt", patterns)
    assert not is_ignored("docs/keep.md", patterns)  # the exception wins; the later `*.md` is root-only
    assert not is_ignored("README.md", patterns)
    assert is_ignored("CHANGES.md", patterns)
    assert not is_ignored("notes/x.md", patterns)  # `*` does not cross a folder


def test_copy_leaves_out_what_is_ignored(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    for name in ("dags/a.py", "logs/x.log", ".env", "keep/.env.example", "deep/__pycache__/m.pyc"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    (source / ".dockerignore").write_text("logs/\n.env\n**/__pycache__\n")
    assert copy_build_context(source, target) == 3
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert copied == [".dockerignore", "dags/a.py", "keep/.env.example"]


def test_env_file_values_are_taken_literally() -> None:
    text = (
        "\ufeff# comment\n"
        "\n"
        "  PLAIN=value\n"
        'QUOTED="kept with quotes"\n'
        "EMPTY=\n"
        "WITH_HASH=a#b # not a comment\n"
        "EQUALS=a=b\n"
        "FROM_HOST\n"
        "UNSET_ON_HOST\n"
        "#COMMENTED=1\n"
    )
    variables = parse_env_file(text, ".env", {"FROM_HOST": "host value"})
    assert variables == {
        "PLAIN": "value",
        "QUOTED": '"kept with quotes"',
        "EMPTY": "",
        "WITH_HASH": "a#b # not a comment",
        "EQUALS": "a=b",
        "FROM_HOST": "host value",
    }


@pytest.mark.parametrize(("line", "message"), [("=value", "no variable name"), ("MY VAR=1", "whitespace")])
def test_env_file_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(AstroPytestError, match=rf"\.env:2: .*{message}"):
        parse_env_file(f"OK=1\n{line}\n", ".env", {})


def test_env_example_reads_as_an_env_file() -> None:
    variables = parse_env_file(
        (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8"), ".env.example", {}
    )
    assert (
        variables["AIRFLOW__CORE__XCOM_BACKEND"] == "include.minio_xcom_backend_pandas.MinIOXComBackendPandas"
    )
    assert "STORAGE_EMULATOR_HOST" not in variables  # commented out there


def test_pytest_pin_is_the_dev_locks() -> None:
    assert pytest_pin().startswith("pytest==")
