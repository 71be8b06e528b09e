"""``kipu dags doctor``: each shard as the dag-processor sees it (files, workflows, parse time against the budget,
store or snapshot), and Airflow's import errors for the shard files."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kipu.factory.shards import FILE_PATTERN, STATUS_FILE, file_name


@dataclass
class ShardReport:
    index: int
    file: str
    file_present: bool
    workflows: int = 0
    dags: int = 0
    invalid: list[str] = field(default_factory=list)
    seconds: float = 0.0
    serialize_seconds: float = 0.0
    source: str = "store"
    snapshot_written_at: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    count: int
    budget_seconds: float
    shards: list[ShardReport]
    extra_files: list[str]
    import_errors: dict[str, str]
    settings: list[str]
    status_file_present: bool = True

    @property
    def ok(self) -> bool:
        return not (
            self.extra_files
            or self.import_errors
            or self.settings
            or not self.status_file_present
            or any(s.problems for s in self.shards)
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def examine(folder: Path, count: int) -> Report:
    """Build every shard as the dag-processor would. The loader's own log lines are held back: the report says it."""
    loader_log = logging.getLogger("kipu.factory.loader")
    level = loader_log.level
    loader_log.setLevel(logging.CRITICAL + 1)
    try:
        return _examine(folder, count)
    finally:
        loader_log.setLevel(level)


def _examine(folder: Path, count: int) -> Report:
    from airflow.configuration import conf
    from airflow.serialization.serialized_objects import DagSerialization

    from kipu.factory.loader import Shard, _records_with_ids, load_records, parse_budget
    from kipu.factory.loader import build as build_shard_dags

    budget = parse_budget()
    file_budget = conf.getfloat("dag_processor", "dag_file_processor_timeout", fallback=50.0) / 2
    present = {p.name for p in folder.glob("kipu_shard_*.py")}
    wanted = {file_name(i, count) for i in range(count)}
    shards: list[ShardReport] = []
    for index in range(count):
        shard = Shard(index, count)
        report = ShardReport(index, file_name(index, count), file_name(index, count) in present)
        started = time.monotonic()
        dags = build_shard_dags(shard)
        report.seconds = round(time.monotonic() - started, 3)
        started = time.monotonic()
        for dag in dags.values():
            DagSerialization.to_dict(dag)  # what the dag-processor's child does next, inside its file timeout
        report.serialize_seconds = round(time.monotonic() - started, 3)
        records, report.source = load_records(shard)
        report.workflows, report.dags = len(records), len(dags)
        report.invalid = sorted(d for d, dag in dags.items() if "kipu:invalid" in (dag.tags or ()))
        if len(_records_with_ids(records)) != len(dags):
            report.problems.append(f"{len(_records_with_ids(records))} DAG ids but {len(dags)} DAGs built")
        if not report.file_present:
            report.problems.append(f"{report.file} is missing from {folder}: its workflows have no DAGs")
        if report.seconds > budget:
            report.problems.append(
                f"parsed in {report.seconds:.1f}s, over the budget of {budget:.1f}s: raise KIPU_DAG_SHARDS"
            )
        if report.seconds + report.serialize_seconds > file_budget:
            report.problems.append(
                f"parsed and serialized in {report.seconds + report.serialize_seconds:.1f}s, over half of "
                f"dag_file_processor_timeout ({file_budget:.1f}s): raise KIPU_DAG_SHARDS"
            )
        if report.source == "snapshot":
            at = shard.snapshot.stat().st_mtime if shard.snapshot.exists() else None
            report.snapshot_written_at = datetime.fromtimestamp(at, UTC).isoformat() if at else None
            report.problems.append(f"the store is unreachable: serving the snapshot of {report.snapshot_written_at}")
        shards.append(report)
    extra = sorted(p for p in present - wanted if FILE_PATTERN.match(p))
    return Report(count, budget, shards, extra, _import_errors(), _settings(), (folder / STATUS_FILE).exists())


def _settings() -> list[str]:
    """Airflow settings that would keep a change from going live on its parse request (docs/deploy.md)."""
    from airflow.configuration import conf

    found = []
    interval = conf.getint("core", "min_serialized_dag_update_interval", fallback=30)
    if interval > 5:
        found.append(
            f"[core] min_serialized_dag_update_interval is {interval}s: an edit within {interval}s of the DAG's "
            "last serialization waits for the periodic parse; set it to 0"
        )
    return found


def _import_errors() -> dict[str, str]:
    """Airflow's import errors for Kipu's shard files and status file (empty when Airflow's database cannot be read)."""
    try:
        from airflow.models.errors import ParseImportError
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as s:
            rows = s.execute(
                select(ParseImportError.filename, ParseImportError.stacktrace).where(
                    ParseImportError.filename.like("%kipu_shard%")
                )
            )
            return {name: (trace or "").strip().splitlines()[-1][:300] for name, trace in rows}
    except Exception:
        return {}


def render(report: Report) -> str:
    lines = [f"{report.count} shards, parse budget {report.budget_seconds:.1f}s (half of dagbag_import_timeout)"]
    lines.append(
        f"{'shard':<18} {'workflows':>9} {'dags':>6} {'invalid':>7} {'parse s':>8} {'serialize s':>11}  source"
    )
    for s in report.shards:
        lines.append(
            f"{s.file:<18} {s.workflows:>9} {s.dags:>6} {len(s.invalid):>7} {s.seconds:>8.2f} "
            f"{s.serialize_seconds:>11.2f}  {s.source}"
        )
        lines.extend(f"  ! {p}" for p in s.problems)
    for name in report.extra_files:
        lines.append(f"! {name} is beyond KIPU_DAG_SHARDS={report.count}: run `kipu dags shards`")
    if not report.status_file_present:
        lines.append(
            f"! {STATUS_FILE} is missing: shard problems do not reach Airflow's import errors; run `kipu dags shards`"
        )
    lines.extend(f"! {problem}" for problem in report.settings)
    for name, error in report.import_errors.items():
        lines.append(f"! Airflow import error in {name}: {error}")
    slowest = max(report.shards, key=lambda s: s.seconds, default=None)
    if slowest is not None:
        lines.append(f"slowest: {slowest.file} {slowest.seconds:.2f}s of {report.budget_seconds:.1f}s")
    lines.append("ok" if report.ok else "problems found")
    return "\n".join(lines)
