"""The public backend classes, by the dotted path that goes into AIRFLOW__CORE__XCOM_BACKEND.

Derived from the store table (registry.py): a JSON and a pandas class for each store that has them.
"""

from include.xcom_backend.registry import TABLE

TUTORIAL_BACKENDS = tuple(path for row in TABLE.values() for path in row.public_backends)
# Backends over more than one store are not a row of the table.
MULTI_STORE_BACKENDS = ("include.mirror_xcom_backend.S3GCSMirrorXComBackendJSON",)
ALL_BACKENDS = (*TUTORIAL_BACKENDS, *MULTI_STORE_BACKENDS)
