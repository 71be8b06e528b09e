"""DAG shards: which DAG file holds a workflow, by a stable key of its id, and the shard files themselves.

A workflow's key depends on its id alone, so it never moves when others are added; a shard is a contiguous key
range, so it reads its workflows through the indexed ``workflows.shard_key`` column.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from kipu.config import env_number

# Keys run 0..KEY_SPACE-1; a shard holds a contiguous range of them. More shards than keys would leave some empty.
KEY_SPACE = 4096
DEFAULT_SHARDS = 32
MAX_SHARDS = 1024
FILE_PATTERN = re.compile(r"^kipu_shard_(\d{2,4})\.py$")

STUB = '''"""Airflow DAGs of the Kipu workflows in shard {index} of the DAG set (written by `kipu dags shards`)."""

from kipu.factory.loader import build_shard

globals().update(build_shard(__file__))
'''

STATUS_FILE = "kipu_shards_status.py"
STATUS_STUB = '''"""Kipu's DAG shards in Airflow: the ``kipu_shards`` DAG shows each shard's last parse. While a shard
serves its last good snapshot or is over its parse budget, this file fails to import instead, naming the shard: an
Airflow import error that makes no shard's DAGs stale (written by `kipu dags shards`)."""

from kipu.factory.status import status_dag

dag = status_dag()
'''


def shard_key(workflow_id: uuid.UUID | str) -> int:
    """A workflow's place in the key space: from its id alone, evenly spread."""
    raw = workflow_id.bytes if isinstance(workflow_id, uuid.UUID) else uuid.UUID(str(workflow_id)).bytes
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") % KEY_SPACE


def shard_count() -> int:
    """``KIPU_DAG_SHARDS`` (default 32): how many DAG files the workflow DAGs are spread over."""
    count = env_number("KIPU_DAG_SHARDS", DEFAULT_SHARDS, 1)
    if count > MAX_SHARDS:
        raise ValueError(f"KIPU_DAG_SHARDS={count} is above its maximum of {MAX_SHARDS}")
    return count


def shard_of(key: int, count: int) -> int:
    return key * count // KEY_SPACE


def key_range(index: int, count: int) -> tuple[int, int]:
    """The keys ``[low, high)`` of shard ``index``: exactly those with ``shard_of(key, count) == index``."""
    return -(-index * KEY_SPACE // count), -(-(index + 1) * KEY_SPACE // count)


def file_name(index: int, count: int) -> str:
    return f"kipu_shard_{index:0{max(2, len(str(count - 1)))}d}.py"


def index_of(path: str | Path) -> int | None:
    match = FILE_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ShardFiles:
    written: list[str]
    removed: list[str]


def write_files(folder: Path, count: int) -> ShardFiles:
    """Exactly ``count`` shard files and the status file in ``folder``: missing ones written, shards beyond the count
    removed."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {file_name(i, count): STUB.format(index=i) for i in range(count)}
    wanted[STATUS_FILE] = STATUS_STUB
    written, removed = [], []
    for name, text in wanted.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    for path in sorted(folder.glob("kipu_shard_*.py")):
        if path.name not in wanted:
            path.unlink()
            removed.append(path.name)
    return ShardFiles(written, removed)
