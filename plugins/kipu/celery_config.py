"""Celery settings for Kipu's workers: Airflow's own, plus Kipu's task-time modules imported once per worker and a
supervisor that frees a task's slot as soon as its process exits.

Set ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=kipu.celery_config.CELERY_CONFIG`` on every Airflow component."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

log = logging.getLogger(__name__)

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)

# What a Kipu task imports: its DAG file's factory and operators, and what the steps call. A task process is forked
# from the worker, so modules imported here once are not imported again by every task (about 115 ms each here).
PRELOAD = ("kipu.factory.loader", "kipu.ingest", "kipu.publishing", "kipu.airflow_api")
PRELOAD_PACKAGES = (
    "kipu.operators",
    "kipu.sensors",
    "kipu.hooks",
    "kipu.platforms",
    "kipu.poll",
    "kipu.notify",
    "kipu.ai",
    "kipu.captions",
)


def preload_modules() -> list[str]:
    """Import Kipu's task-time modules; one that fails is logged and skipped, never stopping the worker."""
    names = list(PRELOAD)
    for package in PRELOAD_PACKAGES:
        try:
            module = importlib.import_module(package)
        except Exception:  # a worker must start even if one package cannot be imported
            log.warning("Kipu could not preload %s", package, exc_info=True)
            continue
        names += [info.name for info in pkgutil.walk_packages(module.__path__, f"{package}.")]
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            log.warning("Kipu could not preload %s", name, exc_info=True)
        else:
            loaded.append(name)
    warm()
    return loaded


def warm() -> None:
    """Work every task would otherwise repeat, done once in the worker: SQLAlchemy configures mappers on their first
    query (about half of a Kipu step's own time here, measured with py-spy), the caption rules compile once, and the
    HTTP clients' TLS context loads its CA bundle once."""
    from sqlalchemy.orm import configure_mappers

    from kipu import tls
    from kipu.captions.entities import DEFAULT, _compiled

    try:
        configure_mappers()
        _compiled(DEFAULT)
        tls.context()
    except Exception:  # a worker must start even if warming fails; each task then does it itself
        log.warning("Kipu could not warm its worker", exc_info=True)


@import_modules.connect
def _preload(*args: Any, **kwargs: Any) -> None:
    # Sent in the worker's main process before its pool forks (Airflow preloads its own operators the same way).
    preload_modules()
    from kipu.supervisor_exit import install

    if not install():
        log.warning("Kipu could not shorten the task supervisor's exit wait; tasks keep Airflow's own")
