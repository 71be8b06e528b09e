"""Kipu's deferrable triggers, run by Airflow's triggerer."""
