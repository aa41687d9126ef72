"""XComs written to S3 and GCS at once, read from S3 (falling back to GCS): a copy in a second cloud.

Select it with

    AIRFLOW__CORE__XCOM_BACKEND=include.mirror_xcom_backend.S3GCSMirrorXComBackendJSON

A push succeeds only when both copies are written; a failed second copy removes the first.
"""

from include.xcom_backend import ObjectStoreXComBackend


class S3GCSMirrorXComBackendJSON(ObjectStoreXComBackend):
    stores = ("s3", "gcs")
