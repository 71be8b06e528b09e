"""Client errors in FastAPI's own validation shape (``detail: [{loc, msg, type}]``), so the OpenAPI schema holds."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException, status


def unprocessable(
    messages: str | Sequence[str], loc: Sequence[str | int] = ("body",), kind: str = "value_error"
) -> HTTPException:
    """A 422 whose every message names where it applies."""
    items = [messages] if isinstance(messages, str) else list(messages)
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": list(loc), "msg": m, "type": kind} for m in items]
    )
