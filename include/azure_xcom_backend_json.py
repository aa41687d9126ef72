"""XComs as JSON blobs in an Azure Blob Storage container (connection azure_xcom_backend_conn).

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.azure_xcom_backend_json.WasbXComBackendJSON
"""

from include.xcom_backend import ObjectStoreXComBackend


class WasbXComBackendJSON(ObjectStoreXComBackend):
    stores = ("wasb",)
