"""XComs in an Azure Blob container: DataFrames and Series as Parquet, everything else as JSON.

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.azure_xcom_backend_pandas.WasbXComBackendPandas
"""

from include.xcom_backend import ObjectStoreXComBackend
from include.xcom_backend.stores import WasbStore


class WasbXComBackendPandas(ObjectStoreXComBackend):
    stores = (WasbStore.from_env,)
    pandas = True
