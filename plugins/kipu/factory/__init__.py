"""The DAG factory: stored workflows in, one Airflow DAG per active workflow out."""
