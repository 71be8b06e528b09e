# The Kipu image: the official Airflow 3.3.2 image plus Kipu and its pinned dependencies.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 requirements.txt /opt/kipu/requirements.txt
RUN pip install --no-cache-dir -r /opt/kipu/requirements.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/kipu/
COPY --chown=airflow:0 plugins /opt/kipu/plugins
RUN pip install --no-cache-dir --no-deps /opt/kipu
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 include /opt/airflow/include
