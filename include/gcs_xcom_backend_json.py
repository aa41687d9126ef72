"""XComs as JSON objects in a Google Cloud Storage bucket (connection gcs_xcom_backend_conn).

Select it with (settings: .env.example):

    AIRFLOW__CORE__XCOM_BACKEND=include.gcs_xcom_backend_json.GCSXComBackendJSON
"""

from include.xcom_backend import ObjectStoreXComBackend


class GCSXComBackendJSON(ObjectStoreXComBackend):
    stores = ("gcs",)
