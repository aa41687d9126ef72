"""XComs in an Azure Blob container: DataFrames and Series as Feather (or Parquet), everything else as JSON.

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.azure_xcom_backend_pandas.WasbXComBackendPandas
"""

from include.xcom_backend import ObjectStoreXComBackend


class WasbXComBackendPandas(ObjectStoreXComBackend):
    stores = ("wasb",)
    pandas = True
