"""The /kipu REST API: a FastAPI app that the Kipu plugin mounts in Airflow's API server."""
