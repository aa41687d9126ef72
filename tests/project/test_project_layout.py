"""The Astro project around the code: runtime image, pins, ignore files, local stores and their settings.

These files are read by tools that are not run here (the Astro CLI, Docker Compose, the image build), so
what can drift between them is checked statically.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from include.xcom_backend.catalog import ALL_BACKENDS
from tests.support.settings_file import SETTINGS_FILE, settings_file
from tools.airflow_settings import load
from tools.astro_image import RUNTIME_AIRFLOW, release, runtime_image, same_release

ROOT = Path(__file__).resolve().parents[2]

# Files `astro dev init` creates (README.md aside, which is this project's own), plus this template's.
ASTRO_FILES = [
    "Dockerfile",
    "requirements.txt",
    "packages.txt",
    "airflow_settings.yaml",
    ".dockerignore",
    ".gitignore",
    ".astro/config.yaml",
    ".env.example",
    "docker-compose.override.yml",
]
ASTRO_DIRS = ["dags", "include", "tests"]

# The catalogue, derived from the store table (importing it imports no SDK).
BACKEND_CLASSES = list(ALL_BACKENDS)

# Azurite's development account key, published by Microsoft: the one key allowed in committed files.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The key pair the local SeaweedFS is started with; meaningless anywhere else.
LOCAL_KEYS = {"local-dev-access-key", "local-dev-secret-key"}

_ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def _lines(path: str) -> list[str]:
    return (ROOT / path).read_text(encoding="utf-8").splitlines()


def env_example() -> list[tuple[bool, str, str]]:
    """(active, name, value) for every assignment in .env.example, commented-out ones included."""
    found = []
    for line in _lines(".env.example"):
        if match := _ASSIGNMENT.match(line.strip()):
            found.append((match.group(1) is None, match.group(2), match.group(3).strip()))
    return found


def active_env() -> dict[str, str]:
    return {name: value for active, name, value in env_example() if active}


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in _lines("requirements-dev.lock"):
        if match := _PIN.match(line.strip()):
            pins[_normalise(match.group(1))] = match.group(3)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.override.yml").read_text(encoding="utf-8"))


def _flag(command: list[str], name: str) -> str:
    for arg in command:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name}= not in {command}")


# --- runtime image and Airflow version ---------------------------------------------------------------------


def test_dockerfile_runtime_ships_the_locally_pinned_airflow() -> None:
    image = runtime_image()
    assert image.airflow == RUNTIME_AIRFLOW[image.build]
    assert lock_pins()["apache-airflow"] == image.airflow
    assert lock_pins()["apache-airflow-core"] == image.airflow
    assert f"apache-airflow=={image.airflow}" in _lines("requirements-dev.in")
    # What is installed (read without importing Airflow, which would bind this process to an
    # AIRFLOW_HOME). In the image this is Astronomer's build, 3.3.2+astro.N: the same release.
    assert same_release(version("apache-airflow"), image.airflow), version("apache-airflow")
    assert same_release(version("apache-airflow-core"), image.airflow), version("apache-airflow-core")


def test_dockerfile_pins_the_python_rather_than_the_builds_default() -> None:
    # The build's default (3.14) is not claimed by the dbt lock; see docs/astro-runtime.md.
    image = runtime_image()
    assert image.python_pinned, f"{image.image} takes the build's default Python"


@pytest.mark.parametrize(
    ("installed", "expected", "same"),
    [
        ("3.3.2", "3.3.2", True),
        ("3.3.2+astro.1", "3.3.2", True),
        ("3.3.2+astro.12", "3.3.2+astro.1", True),
        ("3.3.1+astro.1", "3.3.2", False),
        ("3.3.2rc1", "3.3.2", False),
    ],
)
def test_version_checks_accept_astronomers_local_suffix(installed: str, expected: str, same: bool) -> None:
    assert same_release(installed, expected) is same
    assert release("3.3.2+astro.1") == "3.3.2"


def test_runtime_notes_name_the_dockerfile_build() -> None:
    notes = (ROOT / "docs/astro-runtime.md").read_text(encoding="utf-8")
    image = runtime_image()
    assert f"runtime:{image.build}" in notes
    assert image.image.rpartition("/")[2] in notes
    assert image.airflow in notes


def test_requirements_are_pinned_to_the_locked_versions() -> None:
    locked = lock_pins()
    seen = 0
    for line in _lines("requirements.txt"):
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        match = _PIN.match(requirement)
        assert match, f"requirements.txt: {requirement!r} is not pinned with =="
        name, pinned = _normalise(match.group(1)), match.group(3)
        assert locked.get(name) == pinned, (
            f"{name}=={pinned} but requirements-dev.lock has {locked.get(name)}"
        )
        # The image's Airflow is fixed by the runtime build; pinning it here would fight the image.
        assert name not in {"apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"}
        seen += 1
    assert seen, "requirements.txt lists no packages"


# --- Astro project files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ASTRO_FILES)
def test_astro_file_exists(path: str) -> None:
    if ROOT / path == SETTINGS_FILE:
        settings_file()
    assert (ROOT / path).is_file(), f"{path} is missing"


@pytest.mark.parametrize("path", ASTRO_DIRS)
def test_astro_directory_exists(path: str) -> None:
    assert (ROOT / path).is_dir(), f"{path}/ is missing"


def test_astro_project_has_a_name() -> None:
    config = yaml.safe_load((ROOT / ".astro/config.yaml").read_text(encoding="utf-8"))
    assert config["project"]["name"]


def test_image_leaves_out_local_state_and_secrets() -> None:
    ignored = set(_lines(".dockerignore"))
    for entry in (".env", ".git", "airflow_settings.yaml", ".venv", "node_modules/", ".airflow/"):
        assert entry in ignored, f".dockerignore should list {entry}"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_env_file_is_git_ignored() -> None:
    assert _git("check-ignore", "-q", ".env").returncode == 0, ".env must be git-ignored"


def test_airflow_settings_is_committed() -> None:
    # Part of the template (it seeds the connections), unlike in a project fresh from `astro dev init`.
    assert _git("check-ignore", "-q", "airflow_settings.yaml").returncode == 1, (
        "airflow_settings.yaml is ignored"
    )
    tracked = _git("ls-files", "--error-unmatch", "airflow_settings.yaml")
    assert tracked.returncode == 0, "airflow_settings.yaml is not tracked by git"


# --- .env.example -------------------------------------------------------------------------------------------


def test_env_example_offers_every_backend_with_one_active() -> None:
    offered = [value for _, name, value in env_example() if name == "AIRFLOW__CORE__XCOM_BACKEND"]
    assert sorted(offered) == sorted(BACKEND_CLASSES)
    assert (
        active_env()["AIRFLOW__CORE__XCOM_BACKEND"]
        == "include.minio_xcom_backend_pandas.MinIOXComBackendPandas"
    )
    assert (
        sum(1 for active, name, _ in env_example() if active and name == "AIRFLOW__CORE__XCOM_BACKEND") == 1
    )


@pytest.mark.parametrize("dotted", BACKEND_CLASSES)
def test_offered_backend_class_exists(dotted: str) -> None:
    # Read, not imported: importing a backend imports Airflow and the cloud SDKs.
    module, _, name = dotted.rpartition(".")
    source = ROOT / (module.replace(".", "/") + ".py")
    assert source.is_file(), f"{dotted}: {source.relative_to(ROOT)} does not exist"
    assert re.search(rf"^class {name}\b", source.read_text(encoding="utf-8"), re.MULTILINE), (
        f"{dotted}: no class {name} in {source.relative_to(ROOT)}"
    )


def test_env_example_documents_the_backend_settings() -> None:
    from include.xcom_backend.registry import TABLE
    from include.xcom_backend.settings import OPTIONS

    options = [*OPTIONS.values(), *(o for row in TABLE.values() if row.server for o in row.options.values())]
    documented = {name: value for _, name, value in env_example()}
    for option in options:
        # Every option appears with its default (or empty, which means the default).
        assert documented.get(option.env_var) in (option.default, ""), option.env_var
    assert active_env()["MINIO_SECURE"] == "false"
    # Commented out: it redirects every Google Cloud Storage call, real ones included.
    emulator = [(active, value) for active, name, value in env_example() if name == "STORAGE_EMULATOR_HOST"]
    assert emulator == [(False, "http://fake-gcs-server:4443")]


SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|ACCOUNT_KEY|CREDENTIAL")


@pytest.mark.parametrize("path", [".env.example", "airflow_settings.yaml", "docker-compose.override.yml"])
def test_committed_files_hold_no_real_secrets(path: str) -> None:
    text = (settings_file() if ROOT / path == SETTINGS_FILE else ROOT / path).read_text(encoding="utf-8")
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "looks like an AWS access key id"
    assert "PRIVATE KEY" not in text, "a private key"
    assert not re.search(r"[?&;]sig=[A-Za-z0-9%+/=]{20,}", text), "a signed SAS token"
    for key in re.findall(r"AccountKey=([^;\"'\s]+)", text):
        assert key == AZURITE_KEY, "an Azure account key other than Azurite's public development key"


def test_env_example_secrets_are_placeholders() -> None:
    for _, name, value in env_example():
        if SECRET_NAME.search(name):
            placeholder = value == "" or (value.startswith("<") and value.endswith(">"))
            assert placeholder or value in LOCAL_KEYS, f"{name} in .env.example holds {value!r}"


# --- local stores: compose, .env.example and airflow_settings.yaml agree -----------------------------------


def test_store_services_join_the_astro_network_with_pinned_images() -> None:
    services = compose()["services"]
    assert {"seaweedfs", "azurite", "azurite-init", "fake-gcs-server"} <= set(services)
    for name, service in services.items():
        assert service.get("networks") == ["airflow"], f"{name} is not on the Astro network 'airflow'"
        image = service["image"]
        assert re.search(r":\d[\w.-]*$", image), f"{name}: {image} is not pinned to a version"
        assert "minio/minio" not in image, "MinIO's image is no longer published"


def test_s3_store_matches_env_example_and_connection() -> None:
    env = active_env()
    seaweedfs = compose()["services"]["seaweedfs"]
    command = seaweedfs["command"]
    port = _flag(command, "-s3.port")
    assert env["MINIO_IP"] == f"seaweedfs:{port}"
    assert (env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"]) == (
        seaweedfs["environment"]["AWS_ACCESS_KEY_ID"],
        seaweedfs["environment"]["AWS_SECRET_ACCESS_KEY"],
    )
    buckets = set(_flag(command, "-bucket").split(","))
    assert {env["AIRFLOW__XCOM_BACKEND__S3_BUCKET"], env["AIRFLOW__XCOM_BACKEND__MINIO_BUCKET"]} <= buckets

    conn = load(settings_file()).connection(env["AIRFLOW__XCOM_BACKEND__S3_CONN_ID"])
    assert (conn.login, conn.password) == (env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"])
    assert urlsplit(json.loads(conn.extra)["endpoint_url"]).netloc == env["MINIO_IP"]


def test_gcs_store_matches_env_example() -> None:
    env = active_env()
    service = compose()["services"]["fake-gcs-server"]
    assert f"/data/{env['AIRFLOW__XCOM_BACKEND__GCS_BUCKET']}" in service["tmpfs"]
    emulator = next(value for _, name, value in env_example() if name == "STORAGE_EMULATOR_HOST")
    assert emulator == f"http://fake-gcs-server:{_flag(service['command'], '-port')}"
    conn = load(settings_file()).connection(env["AIRFLOW__XCOM_BACKEND__GCS_CONN_ID"])
    assert conn.conn_type == "google_cloud_platform"


def test_azure_store_matches_env_example_and_connection() -> None:
    env = active_env()
    services = compose()["services"]
    init = services["azurite-init"]
    assert f"--name {env['AIRFLOW__XCOM_BACKEND__WASB_CONTAINER']}" in " ".join(init["command"])
    assert "--skipApiVersionCheck" in services["azurite"]["command"]
    conn = load(settings_file()).connection(env["AIRFLOW__XCOM_BACKEND__WASB_CONN_ID"])
    connection_string = json.loads(conn.extra)["connection_string"]
    assert connection_string == init["environment"]["AZURE_STORAGE_CONNECTION_STRING"]
    assert f"BlobEndpoint=http://azurite:{_flag(services['azurite']['command'], '--blobPort')}/" in (
        connection_string
    )


def test_backend_catalogue_is_the_public_surface() -> None:
    # The README's backend table lists exactly the catalogue the demo and the contract suite run.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `(include\.[\w.]+)` \|", readme, re.MULTILINE)
    assert sorted(listed) == sorted(BACKEND_CLASSES)
