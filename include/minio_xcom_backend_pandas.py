"""XComs on MinIO or any S3 API server: DataFrames and Series as Parquet, everything else as JSON.

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.minio_xcom_backend_pandas.MinIOXComBackendPandas
"""

from include.xcom_backend import ObjectStoreXComBackend
from include.xcom_backend.stores import MinIOStore


class MinIOXComBackendPandas(ObjectStoreXComBackend):
    stores = (MinIOStore.from_env,)
    pandas = True
