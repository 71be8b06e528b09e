"""The DAG factory: stored workflows in, one Airflow DAG per active workflow out."""

import gc as _gc
import os as _os

# A task process (Airflow sets the parsing context) has Airflow's large, long-lived heap loaded when it imports its DAG
# file. Freezing that heap keeps the collections the factory's imports trigger from walking all of it: about 110 ms
# of each task's DAG load here (bench/task_load.py). The process runs one task and exits.
if _os.environ.get("_AIRFLOW_PARSING_CONTEXT_DAG_ID"):
    _gc.freeze()
