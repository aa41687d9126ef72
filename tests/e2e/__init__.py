"""Real DAG runs with `airflow dags test` (marker `e2e`)."""
