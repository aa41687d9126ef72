"""XComs as JSON objects on MinIO or any S3 API server (MINIO_IP, MINIO_ACCESS_KEY, MINIO_SECRET_KEY).

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.minio_xcom_backend_json.MinIOXComBackendJSON
"""

from include.xcom_backend import ObjectStoreXComBackend


class MinIOXComBackendJSON(ObjectStoreXComBackend):
    stores = ("minio",)
