"""XComs as JSON objects in an S3 bucket (connection s3_xcom_backend_conn).

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.s3_xcom_backend_json.S3XComBackendJSON
"""

from include.xcom_backend import ObjectStoreXComBackend


class S3XComBackendJSON(ObjectStoreXComBackend):
    stores = ("s3",)
