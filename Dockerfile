# Astro Runtime 3.3-8 ships Apache Airflow 3.3.2, the version requirements-dev.lock pins for the local
# environment. The -python-3.12 variant, not the build's default 3.14: dbt-core 1.11 (the newest that
# dbt-duckdb supports) does not claim 3.14 and fails at import there, and 3.13 is not claimed by two
# packages of the dbt lock. `python -m tools.image_deps` checks every pin against this line's Python;
# docs/astro-runtime.md has the evidence. The Python is read from this line: change it here only.
FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.12

# dbt for the Cosmos DAG in a virtualenv of its own, as Astronomer recommends, so dbt's pins never meet
# Airflow's. The venv's pip is called directly rather than after `source activate`, which needs bash.
# The Runtime's ONBUILD `COPY . .` runs before this line, so any change in the project re-runs it: the
# BuildKit cache mount keeps pip's downloads between builds (never in the image), so a rebuild installs
# from local wheels instead of downloading ~55 packages again. The mount is owned by uid 50000, taken
# to be the image's `astro` user who runs these steps (not verified: no Docker engine where this was
# written); were it another, pip would warn that the cache is not writable and install without it.
RUN --mount=type=cache,target=/home/astro/.cache/pip,uid=50000 \
    python -m venv dbt_venv && \
    dbt_venv/bin/pip install --cache-dir /home/astro/.cache/pip -r dbt-requirements.lock
# Cosmos renders the dbt tasks from dbt's manifest. dbt/ is baked into the image (`astro dev start`
# mounts dags/ and include/, not dbt/), so a change there needs a rebuild, which parses it again.
RUN dbt_venv/bin/dbt parse --project-dir dbt/pokemon --profiles-dir dbt/pokemon
