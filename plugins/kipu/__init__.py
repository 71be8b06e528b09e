"""Kipu: content cross-posting automation on Apache Airflow 3."""

__version__ = "0.1.0"
