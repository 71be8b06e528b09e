"""Garbage-collector settings for a process that serves the /kipu API: freeze what start-up built, collect less often.

Airflow, SQLAlchemy and pydantic leave about a million long-lived objects behind at import. Without this, the
collector rescans them in full collections that stalled requests for 100-200 ms (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import os

GEN0_THRESHOLD = 10_000  # CPython's default is 700 allocations
_done = False


def tune_gc() -> bool:
    """Once per process, unless ``KIPU_API_GC_TUNING=0``: collect, freeze the survivors, raise the gen-0 threshold."""
    global _done
    if _done or os.environ.get("KIPU_API_GC_TUNING", "1").lower() in ("0", "false", "no", "off"):
        return False
    _done = True
    gc.collect()
    # Frozen objects move to a permanent generation that no collection scans; they are the app's modules,
    # classes and caches, which live as long as the process anyway.
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GEN0_THRESHOLD), gen1, gen2)
    return True
