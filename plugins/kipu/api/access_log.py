"""Kipu API tokens never reach an access log: a root middleware of Airflow's API server blanks any value in a query
string that looks like one. Airflow's access-log middleware wraps every other and reads the query string after the
request, from the same scope: the query string is blanked in place, so the log records it blanked.

Kipu reads tokens only from the ``Authorization`` header, so a token in a query string is refused (401) whatever
this does; this only keeps it out of the logs. Airflow's own log already blanks parameters named like secrets.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
# ``kipu_`` and 43 URL-safe base64 characters (``kipu.store.tokens``), percent-encoded or not.
TOKEN = re.compile(rb"kipu_[A-Za-z0-9_%-]{20,}")
REDACTED = b"kipu_***"


def redact_query(query: bytes) -> bytes:
    return TOKEN.sub(REDACTED, query) if b"kipu_" in query else query


def blank_params(query: bytes, names: frozenset[str]) -> bytes:
    """The query string with the values of ``names`` replaced by ``***``; the rest byte for byte."""
    parts = []
    for part in query.split(b"&"):
        key, sep, _ = part.partition(b"=")
        parts.append(key + b"=***" if sep and key.decode("latin-1") in names else part)
    return b"&".join(parts)


class RedactTokensInQuery:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and b"kipu_" in scope.get("query_string", b""):
            scope["query_string"] = redact_query(scope["query_string"])
        await self.app(scope, receive, send)
