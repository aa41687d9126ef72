# Astro Runtime 3.3-8 is the runtime build that ships Apache Airflow 3.3.2, the version requirements-dev.lock
# pins for the local environment (evidence and Python notes: docs/astro-runtime.md).
FROM astrocrpublic.azurecr.io/runtime:3.3-8

# dbt for the Cosmos DAG in a virtualenv of its own, as Astronomer recommends, so dbt's pins never meet
# Airflow's. The lock is universal (markers per Python version), so it fits the image's Python too.
# The venv's pip is called directly rather than after `source activate`, which needs bash.
RUN python -m venv dbt_venv && \
    dbt_venv/bin/pip install --no-cache-dir -r dbt-requirements.lock
# Cosmos renders the dbt tasks from dbt's manifest. dbt/ is baked into the image (`astro dev start`
# mounts dags/ and include/, not dbt/), so a change there needs a rebuild, which parses it again.
RUN dbt_venv/bin/dbt parse --project-dir dbt/pokemon --profiles-dir dbt/pokemon
