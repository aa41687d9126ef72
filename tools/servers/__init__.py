"""Real local servers for tests, the demo and the benchmark: no Docker needed.

* ``supervisor``: what every server shares (ports, log file, readiness polling, shutdown, watchdog);
* one module per server, declaring its command, readiness check and environment: ``seaweedfs``
  (the S3 API, for the S3 and MinIO stores), ``azurite`` (Azure Blob), ``fake_gcs`` (GCS);
* ``registry``: name -> server class, the names the store table's ``server`` field uses;
* ``local``: ``LocalServers``, a set started together, and the environment and buckets of each store
  row on its server.

``python -m tools.servers`` keeps a set running for manual experiments. Nothing here imports pytest.
"""

from tools.servers.local import LocalServers, connection_env_var, unique_bucket_name
from tools.servers.registry import SERVERS, server_class
from tools.servers.supervisor import Server, ServerNotInstalledError, ServerStartError

__all__ = [
    "SERVERS",
    "LocalServers",
    "Server",
    "ServerNotInstalledError",
    "ServerStartError",
    "connection_env_var",
    "server_class",
    "unique_bucket_name",
]
