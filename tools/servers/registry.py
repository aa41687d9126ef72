"""Every local server by name: the names the store table's ``server`` field (and the tools) use.

Adding a server is one module declaring its command, readiness check and environment (a
``tools.servers.supervisor.Server`` subclass) and one row here.
"""

from __future__ import annotations

from tools.servers.azurite import Azurite
from tools.servers.fake_gcs import FakeGCS
from tools.servers.seaweedfs import SeaweedFS
from tools.servers.supervisor import Server

SERVERS: dict[str, type[Server]] = {cls.name: cls for cls in (SeaweedFS, Azurite, FakeGCS)}


def server_class(name: str) -> type[Server]:
    """The class registered as ``name``, or an error naming it and the known ones."""
    try:
        return SERVERS[name]
    except KeyError:
        raise ValueError(f"unknown local server {name!r}; known: {', '.join(SERVERS)}") from None
