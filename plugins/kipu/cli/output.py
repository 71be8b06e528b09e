"""CLI output: JSON for scripts (--json), else a plain table sized to its contents."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any, width: int = 60) -> str:
    text = "-" if value is None or value == "" else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str = "nothing to show") -> None:
    if not rows:
        print(empty)
        return
    cells = [[_cell(get(r)) for _, get in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(columns)]
    print("  ".join(h.upper().ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def show(data: Any, args: Any, columns: Sequence[Column] | None = None, empty: str = "nothing to show") -> None:
    """``data`` as JSON with --json; else a table of ``columns`` (a list) or key: value lines (an object)."""
    if getattr(args, "json", False):
        emit_json(data)
    elif columns is not None:
        table(data, columns, empty)
    else:
        for key, value in data.items():
            print(f"{key}: {_cell(value, 200)}")
