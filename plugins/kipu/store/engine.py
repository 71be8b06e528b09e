"""Engines and sessions for the Kipu store; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, Executable, Row, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from kipu.config import database_url, env_number


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    extra: dict[str, Any] = {}
    if url.startswith("postgresql+psycopg2") or url.startswith("postgresql://"):
        # executemany of UPDATEs (the poll engine's cursors) as batches, not one round trip per row.
        extra = {"executemany_mode": "values_plus_batch", "executemany_batch_page_size": 500}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **extra)


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or database_url())


@lru_cache(maxsize=8)
def _factory(url: str | None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: commit on success, roll back on error."""
    session = _factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# Async engines for the API's hottest reads; one per event loop, since asyncpg connections belong to their loop.
# Read-only and one statement each, so autocommit: no BEGIN and ROLLBACK round trips around every SELECT.
_ASYNC: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncEngine]] = weakref.WeakKeyDictionary()
# Per API worker process, and no overflow: a list query holds its connection for well under a millisecond, so
# requests queue briefly for one rather than opening (and closing) connections under load.
ASYNC_POOL_SIZE = 5


def async_url(url: str) -> str:
    """The same database through an asyncio driver: asyncpg for PostgreSQL, aiosqlite for SQLite."""
    scheme, _, rest = url.partition("://")
    if scheme.startswith("postgresql"):
        return f"postgresql+asyncpg://{rest}"
    if scheme.startswith("sqlite"):
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"no asyncio driver for {scheme}")


def get_async_engine(url: str | None = None) -> AsyncEngine:
    """This event loop's async engine for the store, for single-statement reads (it autocommits)."""
    url = async_url(url or database_url())
    engines = _ASYNC.setdefault(asyncio.get_running_loop(), {})
    if url not in engines:
        size = env_number("KIPU_API_DB_POOL_SIZE", ASYNC_POOL_SIZE, minimum=1)
        kwargs: dict[str, Any] = {} if url.startswith("sqlite") else {"pool_size": size, "max_overflow": 0}
        # No pre-ping: read_all retries once on a dropped connection instead of paying a round trip per request.
        engines[url] = create_async_engine(url, isolation_level="AUTOCOMMIT", **kwargs)
    return engines[url]


async def read_all(statement: Executable, params: dict[str, Any] | None = None) -> Sequence[Row[Any]]:
    """Every row of one read, on this loop's async engine. A connection the database dropped (a restart, a
    failover) is discarded with the rest of the pool and the read runs once more on a fresh one."""
    try:
        return await _read(statement, params)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return await _read(statement, params)


async def _read(statement: Executable, params: dict[str, Any] | None) -> Sequence[Row[Any]]:
    async with get_async_engine().connect() as conn:
        return (await conn.execute(statement, params)).all()


def reset_engines() -> None:
    """Forget cached engines (tests switch databases; forked workers must not share sockets)."""
    get_engine.cache_clear()
    _factory.cache_clear()
    _ASYNC.clear()
    database_url.cache_clear()
