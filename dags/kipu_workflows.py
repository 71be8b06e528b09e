"""Airflow DAGs for every active Kipu workflow, built from one bulk read of the Kipu store."""

from kipu.factory.loader import build_all

globals().update(build_all())
