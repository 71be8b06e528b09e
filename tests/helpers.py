"""Workflow documents shared by the tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def demo_doc(**changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "include/demo/workflow.yaml").read_text())
    doc.update(changes)
    return copy.deepcopy(doc)


def step(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["id"] == key)
