# The one image of the production topology (docker-compose.yaml): every Airflow component, both Celery
# workers (CPU and GPU) and the MLflow server run it, so all of them have the same code and the same
# pinned dependencies as the embedded stack. Build: docker compose build
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
# The slim variant carries Airflow without the official image's provider set: every package on top comes
# from this project's constraints, so nothing preinstalled can disagree with the tested versions.
FROM apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
ARG PYTHON_VERSION

# airflow-mlops is installed like any provider (a regular, non-editable install: docs/install.md); the
# project's DAGs, specs and plugins folder sit under one folder, as in the repository.
ENV MLOPS_PROJECT=/opt/airflow-mlops
USER root
RUN mkdir -p ${MLOPS_PROJECT} && chown airflow:0 ${MLOPS_PROJECT}
USER airflow
WORKDIR ${MLOPS_PROJECT}
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 constraints/constraints-${PYTHON_VERSION}.txt constraints/constraints-${PYTHON_VERSION}.txt
COPY --chown=airflow:0 src src
# apache-airflow is named with the image's version so that the resolver can never move it.
RUN pip install --no-cache-dir --constraint constraints/constraints-${PYTHON_VERSION}.txt \
        "apache-airflow==${AIRFLOW_VERSION}" ".[production,torch]" \
    && pip check && rm -rf src build

COPY --chown=airflow:0 dags dags
COPY --chown=airflow:0 include include
COPY --chown=airflow:0 plugins plugins
# Airflow imports airflow_local_settings from $AIRFLOW_HOME/config: the pool policy for MLflow and Feast.
COPY --chown=airflow:0 deploy/airflow/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py

ENV AIRFLOW__CORE__DAGS_FOLDER=${MLOPS_PROJECT}/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=${MLOPS_PROJECT}/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /opt/airflow
