"""Airflow DAGs of the Kipu workflows in shard 1 of the DAG set (written by `kipu dags shards`)."""

from kipu.factory.loader import build_shard

globals().update(build_shard(__file__))
