"""Kipu's pages inside Airflow's UI: server-rendered, signed in with Airflow's own session (``session``), acting
through the /kipu API in process as the signed-in person (``pages``)."""
