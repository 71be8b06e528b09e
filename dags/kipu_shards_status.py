"""Kipu's DAG shards in Airflow: the ``kipu_shards`` DAG shows each shard's last parse. While a shard
serves its last good snapshot or is over its parse budget, this file fails to import instead, naming the shard: an
Airflow import error that makes no shard's DAGs stale (written by `kipu dags shards`)."""

from kipu.factory.status import status_dag

dag = status_dag()
