"""XComs in an S3 bucket: DataFrames and Series as Feather (or Parquet), everything else as JSON.

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.s3_xcom_backend_pandas.S3XComBackendPandas
"""

from include.xcom_backend import ObjectStoreXComBackend


class S3XComBackendPandas(ObjectStoreXComBackend):
    stores = ("s3",)
    pandas = True
