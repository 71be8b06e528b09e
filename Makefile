# Kipu: `make demo` runs the main job end to end; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kipu-installed

.PHONY: demo test test-fast test-distributed lint format bench bench-e2e bench-api bench-dagset bench-task-load venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	# The build leaves plugins/kipu.egg-info on sys.path: a second "kipu" distribution, which made Airflow load the
	# plugin twice and report an import error for it.
	rm -rf plugins/kipu.egg-info
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kipu demo

# Tests run in WORKERS processes (pytest-xdist), a file per process at a time: each process has its own Airflow home,
# metadata database and stores. The native Celery topology tests (-m stack) start a whole stack each and time its
# recovery from faults, so they run alone, after: alongside the rest, a database outage once took longer to recover
# from than the test allows.
WORKERS ?= 2
PARALLEL := -n $(WORKERS) --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "not stack" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m stack $(PYTEST_ARGS)

# Everything that needs neither Airflow's app and metadata database nor the deployed stack (PostgreSQL still).
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow and not airflow" $(PYTEST_ARGS)

# The compose topology natively (api-server, scheduler, dag-processor, triggerer, Celery worker); also part of `test`.
test-distributed: $(STAMP)
	$(BIN)/python -m pytest tests/test_distributed.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/factory_parse.py
	$(BIN)/python bench/poll.py
	$(BIN)/python bench/ai.py
	$(BIN)/python bench/x_publish.py

# The native distributed stack (2 Celery workers) end to end; several minutes.
bench-e2e: $(STAMP)
	$(BIN)/python bench/e2e.py

# /kipu API latency with wrk (`apt-get install wrk`; falls back to httpx) against FastAPI's minimal endpoint.
bench-api: $(STAMP)
	$(BIN)/python bench/api.py

clean:
	rm -rf .kipu

bench-dagset: $(STAMP)
	$(BIN)/python bench/dagset.py $(DAGSET_ARGS)

# What a task pays to load its DAG (a shard under a parsing context) against a bare 3-@task DAG file.
bench-task-load: $(STAMP)
	$(BIN)/python bench/task_load.py
