"""The public backend classes, by the dotted path that goes into AIRFLOW__CORE__XCOM_BACKEND."""

# The tutorial's eight: a JSON and a pandas class per store.
TUTORIAL_BACKENDS = (
    "include.s3_xcom_backend_json.S3XComBackendJSON",
    "include.s3_xcom_backend_pandas.S3XComBackendPandas",
    "include.gcs_xcom_backend_json.GCSXComBackendJSON",
    "include.gcs_xcom_backend_pandas.GCSXComBackendPandas",
    "include.azure_xcom_backend_json.WasbXComBackendJSON",
    "include.azure_xcom_backend_pandas.WasbXComBackendPandas",
    "include.minio_xcom_backend_json.MinIOXComBackendJSON",
    "include.minio_xcom_backend_pandas.MinIOXComBackendPandas",
)
ALL_BACKENDS = (*TUTORIAL_BACKENDS, "include.mirror_xcom_backend.S3GCSMirrorXComBackendJSON")
