"""Shard health in Airflow: each shard's parse records how it went, and ``kipu_shards_status.py`` fails to import
while a shard serves its last good snapshot or is over its parse budget, naming it in Airflow's import errors.

The error sits on that file alone, so Airflow makes no shard's DAGs stale for it (it does so to every DAG of a file
with an import error). Otherwise the file holds ``kipu_shards``, a DAG whose docs show every shard's last parse."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from kipu.factory.shards import file_name, shard_count

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from kipu.factory.reparse import ParseTarget

log = logging.getLogger(__name__)
STATUS_DAG_ID = "kipu_shards"


class ShardStatus(BaseModel):
    """How a shard's last full parse went, as the dag-processor ran it."""

    index: int
    count: int
    source: str  # "store" or "snapshot"
    seconds: float
    budget: float
    workflows: int
    dags: int
    at: datetime
    snapshot_at: datetime | None = None
    dag_id: str | None = None  # one DAG the shard holds: Airflow's REST API names its file by it

    @property
    def file(self) -> str:
        return file_name(self.index, self.count)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.source == "snapshot":
            since = self.snapshot_at.isoformat(timespec="seconds") if self.snapshot_at else "no snapshot"
            # No parse time here: a shard asked for again each cycle would change the report each cycle.
            found.append(
                f"the Kipu store was unreachable at its last parse: it serves its last good snapshot ({since}); "
                "edits to its workflows wait for the store"
            )
        if self.seconds > self.budget:
            found.append(
                f"parsed in {self.seconds:.1f}s, over its budget of {self.budget:.1f}s (half of "
                "dagbag_import_timeout): raise KIPU_DAG_SHARDS and run `kipu dags shards`"
            )
        return found


class ShardsNeedAttention(RuntimeError):
    """Raised by ``kipu_shards_status.py``: Airflow shows it as that file's import error."""


def status_path(index: int | None) -> Path:
    """Shard ``index``'s status; with None, what the status file last reported."""
    from kipu.factory.loader import snapshot_path

    name = "dag_status.reported.json" if index is None else f"dag_status.shard-{index:04d}.json"
    return snapshot_path().with_name(name)


def _write(path: Path, text: str) -> bool:
    from kipu.factory.loader import write_atomic

    return write_atomic(path, text.encode())


def read(index: int, count: int) -> ShardStatus | None:
    """Shard ``index``'s last recorded parse under ``count`` shards; None if none, or recorded under another count."""
    try:
        status = ShardStatus.model_validate_json(status_path(index).read_bytes())
    except (OSError, ValidationError):
        return None
    return status if status.count == count else None


def record(status: ShardStatus) -> None:
    """Write a shard's status, from its parse."""
    _write(status_path(status.index), status.model_dump_json())


def recorded(count: int | None = None) -> list[ShardStatus]:
    """Every shard's last recorded parse under ``count`` shards (default: the configured count), read once."""
    count = shard_count() if count is None else count
    return [s for s in (read(i, count) for i in range(count)) if s is not None]


def needing_attention(count: int | None = None) -> list[ShardStatus]:
    return [s for s in recorded(count) if s.problems]


def problems(statuses: list[ShardStatus] | None = None) -> list[str]:
    """One line per problem of every shard (of ``statuses``, default: as recorded), naming its file."""
    statuses = recorded() if statuses is None else statuses
    return [f"{s.file}: {problem}" for s in statuses for problem in s.problems]


def report_due() -> bool:
    """The shards' problems differ from what the status file last reported: it must be parsed again."""
    try:
        reported = json.loads(status_path(None).read_text())
    except (OSError, ValueError):
        reported = []
    return reported != problems()


def check(statuses: list[ShardStatus] | None = None) -> None:
    """Raise, naming every shard that needs attention; record what was reported either way."""
    found = problems(statuses)
    _write(status_path(None), json.dumps(found))
    if found:
        raise ShardsNeedAttention(
            f"{len(found)} problem(s) in Kipu's DAG shards; their DAGs stay as last served. " + " | ".join(found)
        )


def status_dag() -> DAG:
    """What ``kipu_shards_status.py`` holds: raises while a shard needs attention, else the ``kipu_shards`` DAG."""
    from airflow.sdk import DAG

    from kipu.factory.builder import START

    count = shard_count()
    statuses = recorded(count)  # read once: for the check and for the table
    check(statuses)
    rows = [
        f"| {s.file} | {s.workflows} | {s.dags} | {s.seconds:.2f} s of {s.budget:.1f} s | {s.source} | "
        f"{s.at.isoformat(timespec='seconds')} |"
        for s in statuses
    ]
    return DAG(
        dag_id=STATUS_DAG_ID,
        schedule=None,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=True,
        tags=["kipu", "kipu:engine"],
        description=f"Kipu: {count} DAG shards, all served from the store within their parse budget",
        doc_md="### Kipu's DAG shards\n\nEach shard's last parse by the dag-processor. A shard on its snapshot or "
        "over its budget turns this DAG into an import error of `kipu_shards_status.py` naming it; "
        "`kipu dags doctor` tells more.\n\n"
        + "\n".join(["| shard | workflows | DAGs | parse | source | at |", "|---|---|---|---|---|---|", *rows]),
    )


def on_snapshot(count: int | None = None) -> list[ParseTarget]:
    """The shards last served from a snapshot: once the store answers again, they should be parsed again."""
    from kipu.factory.reparse import ParseTarget

    return [ParseTarget(s.file, s.dag_id) for s in recorded(count) if s.source == "snapshot"]
