"""A real PostgreSQL for the suite: 127.0.0.1:5432 if it answers, else a throwaway cluster (initdb/pg_ctl)."""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg2


def _answers(host: str, port: int) -> bool:
    try:
        psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres", connect_timeout=3).close()
        return True
    except psycopg2.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres_user() -> list[str]:
    # initdb refuses to run as root; run the throwaway cluster as an unprivileged user.
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user exists to own a PostgreSQL cluster")


def _start_cluster() -> tuple[str, int]:
    initdb = shutil.which("initdb") or next(
        (p for p in sorted(__import__("glob").glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None
    )
    if not initdb:
        raise RuntimeError("no PostgreSQL answers on 127.0.0.1:5432 and initdb is not installed")
    pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
    data = tempfile.mkdtemp(prefix="kipu-pg-")
    prefix = _as_postgres_user()
    if prefix:
        shutil.chown(data, prefix[2])
    port = _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            data,
            "-o",
            f"-p {port} -k {data} -h 127.0.0.1",
            "-l",
            f"{data}/log",
            "-w",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    def stop() -> None:
        subprocess.run([*prefix, pg_ctl, "-D", data, "-m", "fast", "stop"], stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(stop)
    for _ in range(50):
        if _answers("127.0.0.1", port):
            break
        time.sleep(0.2)
    return "127.0.0.1", port


_SERVER: tuple[str, int] | None = None


def server() -> tuple[str, int]:
    global _SERVER
    if _SERVER is None:
        host = os.environ.get("KIPU_TEST_PGHOST", "127.0.0.1")
        port = int(os.environ.get("KIPU_TEST_PGPORT", "5432"))
        _SERVER = (host, port) if _answers(host, port) else _start_cluster()
    return _SERVER


def create_database() -> str:
    """A fresh database; returns its SQLAlchemy URL."""
    host, port = server()
    name = f"kipu_t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"postgresql+psycopg2://postgres@{host}:{port}/{name}"


def drop_database(url: str) -> None:
    host, port = server()
    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
