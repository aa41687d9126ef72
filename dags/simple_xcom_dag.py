"""
## Simple XCom DAG: check that your custom XCom backend works

One task picks a random number between 1 and 10 and returns it, which pushes it to XCom. A second
task receives it as its argument, which pulls it from XCom, and prints it.

With Airflow's default settings the number is stored in the metadata database. To store it in an
object store instead, point `AIRFLOW__CORE__XCOM_BACKEND` at one of the backends in `include/`, e.g.
in `.env`:

```
AIRFLOW__CORE__XCOM_BACKEND=include.minio_xcom_backend_json.MinIOXComBackendJSON
```

Any of these works for this DAG (the JSON backends are enough, a number is JSON):

- `include.s3_xcom_backend_json.S3XComBackendJSON`
- `include.gcs_xcom_backend_json.GCSXComBackendJSON`
- `include.azure_xcom_backend_json.WasbXComBackendJSON`
- `include.minio_xcom_backend_json.MinIOXComBackendJSON`
- the pandas twins: `include.s3_xcom_backend_pandas.S3XComBackendPandas`,
  `include.gcs_xcom_backend_pandas.GCSXComBackendPandas`,
  `include.azure_xcom_backend_pandas.WasbXComBackendPandas`,
  `include.minio_xcom_backend_pandas.MinIOXComBackendPandas`

Then trigger the DAG and open the logs of both tasks: they show the number, and the object the
backend wrote appears in your bucket or container.
"""

import logging
import random
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

log = logging.getLogger(__name__)


@dag(
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["xcom", "tutorial"],
)
def simple_xcom_dag() -> None:
    @task
    def pick_a_random_number() -> int:
        number = random.randint(1, 10)
        log.info("Picked %d; returning it pushes it to XCom", number)
        return number

    @task
    def print_a_number(number: int) -> None:
        log.info("Pulled %d from XCom", number)
        print(number)

    print_a_number(pick_a_random_number())


simple_xcom_dag()
