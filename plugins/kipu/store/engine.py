"""Engines and sessions for the Kipu store; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kipu.config import database_url


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


def reset_engines() -> None:
    """Forget cached engines (tests switch databases; forked workers must not share sockets)."""
    for engine in [get_engine(u) for u in ()]:
        engine.dispose()
    get_engine.cache_clear()
    _factory.cache_clear()
    database_url.cache_clear()
