"""XComs in a GCS bucket: DataFrames and Series as Feather (or Parquet), everything else as JSON.

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.gcs_xcom_backend_pandas.GCSXComBackendPandas
"""

from include.xcom_backend import ObjectStoreXComBackend


class GCSXComBackendPandas(ObjectStoreXComBackend):
    stores = ("gcs",)
    pandas = True
