# Astro Runtime 3.3-8 is the runtime build that ships Apache Airflow 3.3.2, the version requirements-dev.lock
# pins for the local environment (evidence and Python notes: docs/astro-runtime.md).
FROM astrocrpublic.azurecr.io/runtime:3.3-8
