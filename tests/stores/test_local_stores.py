"""The local servers work with the exact clients the XCom backends use, and reject wrong credentials.

The "missing" tests pin down how each client reports a missing key or bucket against these servers:
the backends' error handling is written against exactly these exceptions.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.xcom_backend.registry import TABLE
from tests.conftest import stores_required
from tools.servers import SERVERS, LocalServers, ServerStartError, connection_env_var, unique_bucket_name
from tools.servers.seaweedfs import SeaweedFS

pytestmark = pytest.mark.stores

KEY = "dag_id/run_id/task_id/return_value.json"
S3_CONN_ID, GCS_CONN_ID, AZURE_CONN_ID = (TABLE[s].options["conn_id"].default for s in ("s3", "gcs", "wasb"))


def payload() -> bytes:
    # Random bytes so that a stale or cached object can never pass for the one just written.
    return os.urandom(2048) + "✓ xcom".encode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent (or init) to collect it.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_every_store_server_is_registered_and_running(local_stores: LocalServers) -> None:
    named = {row.server for row in TABLE.values() if row.server}
    assert named <= set(SERVERS)
    assert set(local_stores.servers) == named
    assert all(server.is_running() for server in local_stores.servers.values())
    assert len({server.port for server in local_stores.servers.values()}) == len(named)


def test_env_gives_each_row_its_connection_and_variables(local_stores: LocalServers) -> None:
    env = local_stores.env()
    for row in local_stores.rows():
        expected = set(row.environment)
        if "conn_id" in row.options:
            expected.add(connection_env_var(row.options["conn_id"].default))
        assert expected <= set(env), row.scheme
        assert set(local_stores.store_env(row.scheme)) == expected


def test_env_points_at_the_servers(local_stores: LocalServers) -> None:
    env = local_stores.env()
    for name, value in env.items():
        assert os.environ[name] == value
    s3 = json.loads(env[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"])
    assert s3["extra"]["endpoint_url"] == local_stores.seaweedfs.endpoint
    assert env["MINIO_IP"] == f"127.0.0.1:{local_stores.seaweedfs.port}"
    assert env["STORAGE_EMULATOR_HOST"] == local_stores.fake_gcs.endpoint
    azure = json.loads(env[f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}"])
    assert local_stores.azurite.blob_endpoint in azure["extra"]["connection_string"]


def test_default_buckets_exist(local_stores: LocalServers) -> None:
    s3_names = {b["Name"] for b in local_stores.seaweedfs.client().list_buckets()["Buckets"]}
    assert {TABLE["s3"].default_bucket, TABLE["minio"].default_bucket} <= s3_names
    assert local_stores.fake_gcs.client().bucket(TABLE["gcs"].default_bucket).exists()
    assert local_stores.azurite.client().get_container_client(TABLE["wasb"].default_bucket).exists()


def test_a_store_without_a_server_is_named_in_the_error(local_stores: LocalServers) -> None:
    for scheme in [row.scheme for row in TABLE.values() if row.server is None]:
        with pytest.raises(ValueError, match=f"{scheme!r} needs no local server"):
            local_stores.server_for(scheme)
    with pytest.raises(ValueError, match="unknown XCom store 'dropbox'"):
        local_stores.server_for("dropbox")


def test_unique_bucket_names_are_valid_everywhere() -> None:
    names = {unique_bucket_name() for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert 3 <= len(name) <= 63 and name == name.lower() and name[0].isalnum() and "--" not in name


# --- S3: S3Hook against SeaweedFS -----------------------------------------------------------------


def test_s3hook_put_get_delete(new_bucket) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    bucket = new_bucket("s3")
    data = payload()
    hook = S3Hook(aws_conn_id=S3_CONN_ID)
    hook.load_bytes(data, key=KEY, bucket_name=bucket)

    assert hook.get_key(KEY, bucket).get()["Body"].read() == data
    assert hook.get_conn().get_object(Bucket=bucket, Key=KEY)["Body"].read() == data

    hook.delete_objects(bucket, [KEY])
    assert not hook.check_for_key(KEY, bucket)


def test_s3hook_missing_key_and_bucket(new_bucket, bucket_name: str) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    bucket = new_bucket("s3")
    hook = S3Hook(aws_conn_id=S3_CONN_ID)
    client = hook.get_conn()

    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=bucket, Key="missing")
    # get_key() sends HEAD, whose error has no body: only the bare status code survives, and a
    # missing bucket looks exactly like a missing key.
    for missing_bucket in (bucket, bucket_name):
        with pytest.raises(ClientError) as err:
            hook.get_key("missing", missing_bucket)
        assert err.value.response["Error"]["Code"] == "404"
    with pytest.raises(client.exceptions.NoSuchBucket):
        client.get_object(Bucket=bucket_name, Key=KEY)
    # No bucket is created on write (`-s3.autoCreateBucket=false`), as on AWS.
    with pytest.raises(client.exceptions.NoSuchBucket):
        hook.load_bytes(b"x", key=KEY, bucket_name=bucket_name)
    # Deleting a missing key succeeds, as on AWS.
    hook.delete_objects(bucket, ["missing"])


def test_seaweedfs_rejects_wrong_credentials(seaweedfs, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        seaweedfs.client(secret_key="wrong-secret").list_buckets()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    with pytest.raises(ClientError) as err:
        seaweedfs.client(access_key="AKIAUNKNOWN000000000", secret_key="x").get_object(
            Bucket="s3-xcom-backend-example", Key=KEY
        )
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    wrong = seaweedfs.airflow_connection() | {"password": "wrong-secret"}
    monkeypatch.setenv("AIRFLOW_CONN_S3_WRONG_SECRET", json.dumps(wrong))
    with pytest.raises(ClientError) as err:
        S3Hook(aws_conn_id="s3_wrong_secret").load_bytes(b"x", key=KEY, bucket_name="s3-xcom-backend-example")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# --- MinIO: the minio SDK against SeaweedFS -------------------------------------------------------


def _minio_from_env(secret_key: str | None = None):
    from minio import Minio

    return Minio(
        os.environ["MINIO_IP"],
        access_key=os.environ["MINIO_ACCESS_KEY"],
        secret_key=secret_key or os.environ["MINIO_SECRET_KEY"],
        secure=os.environ["MINIO_SECURE"] == "true",
    )


def test_minio_sdk_put_get_remove(new_bucket) -> None:
    from minio.error import S3Error

    bucket = new_bucket("minio")
    data = payload()
    client = _minio_from_env()
    client.put_object(bucket, KEY, io.BytesIO(data), len(data), content_type="application/json")

    response = client.get_object(bucket, KEY)
    try:
        assert response.read() == data
    finally:
        response.close()
        response.release_conn()

    client.remove_object(bucket, KEY)
    with pytest.raises(S3Error) as err:
        client.stat_object(bucket, KEY)
    assert err.value.code == "NoSuchKey"


def test_minio_sdk_missing_key_and_bucket(new_bucket, bucket_name: str) -> None:
    from minio.error import S3Error

    bucket = new_bucket("minio")
    client = _minio_from_env()
    with pytest.raises(S3Error) as err:
        client.get_object(bucket, "missing")
    assert err.value.code == "NoSuchKey"
    with pytest.raises(S3Error) as err:
        client.get_object(bucket_name, KEY)
    assert err.value.code == "NoSuchBucket"
    with pytest.raises(S3Error) as err:
        client.put_object(bucket_name, KEY, io.BytesIO(b"x"), 1)
    assert err.value.code == "NoSuchBucket"
    assert client.bucket_exists(bucket_name) is False
    client.remove_object(bucket, "missing")  # no error, as on AWS and MinIO


def test_minio_sdk_wrong_secret_is_rejected(local_stores: LocalServers) -> None:
    from minio.error import S3Error

    with pytest.raises(S3Error) as err:
        _minio_from_env(secret_key="wrong-secret").get_object("custom-xcom-backend", KEY)
    assert err.value.code == "SignatureDoesNotMatch"
    assert err.value.response.status == 403


# --- GCS: GCSHook against fake-gcs-server ---------------------------------------------------------


def test_gcshook_upload_download_delete(new_bucket) -> None:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    bucket = new_bucket("gcs")
    data = payload()
    hook = GCSHook(gcp_conn_id=GCS_CONN_ID)
    hook.upload(bucket_name=bucket, object_name=KEY, data=data)

    assert hook.download(bucket_name=bucket, object_name=KEY) == data

    hook.delete(bucket_name=bucket, object_name=KEY)
    assert not hook.exists(bucket, KEY)


def test_gcshook_missing_object_and_bucket(new_bucket, bucket_name: str) -> None:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from google.api_core.exceptions import NotFound

    bucket = new_bucket("gcs")
    hook = GCSHook(gcp_conn_id=GCS_CONN_ID)
    with pytest.raises(NotFound):
        hook.download(bucket_name=bucket, object_name="missing")
    with pytest.raises(NotFound):
        hook.download(bucket_name=bucket_name, object_name=KEY)
    with pytest.raises(NotFound):
        hook.upload(bucket_name=bucket_name, object_name=KEY, data=b"x")
    # Unlike S3, deleting a missing object is an error.
    with pytest.raises(NotFound):
        hook.delete(bucket_name=bucket, object_name="missing")
    assert hook.exists(bucket_name, KEY) is False


# --- Azure: WasbHook against Azurite --------------------------------------------------------------


def test_wasbhook_upload_download_delete(new_bucket) -> None:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    container = new_bucket("wasb")
    data = payload()
    hook = WasbHook(wasb_conn_id=AZURE_CONN_ID)
    hook.upload(container_name=container, blob_name=KEY, data=data)

    assert hook.download(container_name=container, blob_name=KEY).readall() == data

    hook.delete_file(container, KEY)
    assert not hook.check_for_blob(container, KEY)


def test_wasbhook_missing_blob_and_container(new_bucket, bucket_name: str) -> None:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    container = new_bucket("wasb")
    hook = WasbHook(wasb_conn_id=AZURE_CONN_ID)
    with pytest.raises(ResourceNotFoundError) as err:
        hook.download(container_name=container, blob_name="missing")
    assert err.value.error_code == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError) as err:
        hook.download(container_name=bucket_name, blob_name=KEY)
    assert err.value.error_code == "ContainerNotFound"
    with pytest.raises(ResourceNotFoundError) as err:
        hook.upload(container_name=bucket_name, blob_name=KEY, data=b"x")
    assert err.value.error_code == "ContainerNotFound"

    # upload() does not overwrite unless told to.
    hook.upload(container_name=container, blob_name=KEY, data=b"1")
    with pytest.raises(ResourceExistsError):
        hook.upload(container_name=container, blob_name=KEY, data=b"2")
    hook.upload(container_name=container, blob_name=KEY, data=b"2", overwrite=True)
    assert hook.download(container_name=container, blob_name=KEY).readall() == b"2"

    # delete_file() raises a plain AirflowException for a missing blob unless ignore_if_missing.
    with pytest.raises(Exception, match="not found"):
        hook.delete_file(container, "missing")
    hook.delete_file(container, "missing", ignore_if_missing=True)


def test_azurite_rejects_wrong_key(azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    from azure.core.exceptions import HttpResponseError

    wrong_key = base64.b64encode(b"not the azurite development account key!").decode()
    with pytest.raises(HttpResponseError) as err:
        next(iter(azurite.client(account_key=wrong_key).list_containers()))
    assert err.value.status_code == 403

    wrong_conn = {"conn_type": "wasb", "extra": {"connection_string": azurite.connection_string(wrong_key)}}
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_WRONG_KEY", json.dumps(wrong_conn))
    with pytest.raises(HttpResponseError) as err:
        WasbHook(wasb_conn_id="azure_wrong_key").upload(
            container_name="custom-xcom-backend", blob_name=KEY, data=b"x", overwrite=True
        )
    assert err.value.status_code == 403
    # Azurite answers AuthorizationFailure, which azure-core does not map to ClientAuthenticationError.
    assert err.value.error_code == "AuthorizationFailure"


# --- lifecycle ------------------------------------------------------------------------------------


def test_stop_terminates_every_process(start_local_stores) -> None:
    stores = start_local_stores()
    pids = [server.pid for server in stores.servers.values()]
    ports = [server.port for server in stores.servers.values()]
    assert all(pid is not None and pid_alive(pid) for pid in pids)
    assert all(port_open(port) for port in ports)

    stores.stop()

    assert not any(server.is_running() for server in stores.servers.values())
    assert not [pid for pid in pids if pid is not None and pid_alive(pid)]
    assert not [port for port in ports if port_open(port)]
    stores.stop()  # a second stop is harmless


def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """If the process that started a server is SIGKILLed (no atexit), the watchdog still ends it."""
    script = (
        "import sys, time\n"
        "from tools.servers.fake_gcs import FakeGCS\n"
        f"server = FakeGCS({str(tmp_path)!r}).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        if not line.strip().isdigit():
            message = "fake-gcs-server did not start in the child process (see its stderr above)"
            if stores_required():
                pytest.fail(message)
            pytest.skip(message)
        server_pid = int(line)
        assert pid_alive(server_pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while pid_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(server_pid)


@pytest.mark.parametrize("name", SERVERS)
def test_stop_before_start_is_harmless(name: str, tmp_path: Path) -> None:
    server = SERVERS[name](tmp_path)
    server.stop()
    assert not server.is_running()


class _ExitsAtOnce(SeaweedFS):
    """SeaweedFS's own set-up and clean-up around a command that fails, as a bad flag would."""

    def command(self) -> list[str]:
        code = "import sys; print('unknown flag: -s3.port', file=sys.stderr); sys.exit(3)"
        return [sys.executable, "-c", code]


def test_a_failed_start_reports_the_servers_own_error(tmp_path: Path) -> None:
    servers = LocalServers(tmp_path, names=[])
    servers.servers["seaweedfs"] = broken = _ExitsAtOnce(tmp_path / "broken")
    with pytest.raises(ServerStartError) as err:
        servers.start()
    assert err.value.server == "SeaweedFS"
    assert "exited with code 3" in err.value.reason
    assert "unknown flag: -s3.port" in str(err.value)
    assert not broken.is_running()
    servers.stop()  # after a failed start, as a fixture's teardown would


def test_command_line_keeps_servers_running_until_interrupted(tmp_path: Path) -> None:
    env_file = tmp_path / "servers.env"
    servers = ["--servers", "fake-gcs,azurite"]
    command = [sys.executable, "-m", "tools.servers", *servers, "--env-file", str(env_file)]
    proc = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path / "data")],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "STORAGE_EMULATOR_HOST" not in (env_file.read_text() if env_file.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                message = (
                    f"no {env_file.name} (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}"
                )
                if stores_required() or proc.poll() is None:
                    pytest.fail(message)
                pytest.skip(message)
            time.sleep(0.1)
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
        )
        assert set(exports) == {
            *TABLE["gcs"].environment,
            connection_env_var(GCS_CONN_ID),
            connection_env_var(AZURE_CONN_ID),
        }
        port = int(shlex.split(exports["STORAGE_EMULATOR_HOST"])[0].rsplit(":", 1)[1])
        assert port_open(port)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "# stopping" in err
    assert not port_open(port)
    # Library loggers stay at WARNING: the Azure SDK would log every request of Azurite's readiness
    # check and of the container creation.
    assert "Request URL" not in out + err
