"""XComs on MinIO or any S3 API server: DataFrames and Series as Feather (or Parquet), the rest as JSON.

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.minio_xcom_backend_pandas.MinIOXComBackendPandas
"""

from include.xcom_backend import ObjectStoreXComBackend


class MinIOXComBackendPandas(ObjectStoreXComBackend):
    stores = ("minio",)
    pandas = True
