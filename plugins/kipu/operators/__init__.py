"""Airflow operators for Kipu's step types, each recording its ``workflow_step_runs`` row."""
