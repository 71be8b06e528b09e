-- One PostgreSQL, two databases: Airflow's metadata and the Kipu store.
CREATE DATABASE kipu OWNER airflow;
