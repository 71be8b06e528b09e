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


class Cluster:
    """A throwaway PostgreSQL cluster (initdb/pg_ctl) on its own port, which a test can stop and start again."""

    def __init__(self) -> None:
        initdb = shutil.which("initdb") or next(
            (p for p in sorted(__import__("glob").glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None
        )
        if not initdb:
            raise RuntimeError("initdb is not installed: no PostgreSQL cluster can be made")
        self.pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
        self.data = tempfile.mkdtemp(prefix="kipu-pg-")
        self.prefix = _as_postgres_user()
        if self.prefix:
            shutil.chown(self.data, self.prefix[2])
        self.port = _free_port()
        subprocess.run(
            [*self.prefix, initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.start()
        atexit.register(self.destroy)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -h 127.0.0.1 -c max_connections=300"
        cmd = [*self.prefix, self.pg_ctl, "-D", self.data, "-o", opts, "-l", f"{self.data}/log", "-w", "start"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        for _ in range(50):
            if _answers("127.0.0.1", self.port):
                return
            time.sleep(0.2)

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, new ones refused, until ``start``."""
        cmd = [*self.prefix, self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)

    def destroy(self) -> None:
        if not os.path.isdir(self.data):
            return
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def create_database(self) -> str:
        name = f"kipu_t_{uuid.uuid4().hex[:12]}"
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"


def _start_cluster() -> tuple[str, int]:
    return "127.0.0.1", Cluster().port


_SERVER: tuple[str, int] | None = None


def server() -> tuple[str, int]:
    global _SERVER
    if _SERVER is None:
        host = os.environ.get("KIPU_TEST_PGHOST", "127.0.0.1")
        port = int(os.environ.get("KIPU_TEST_PGPORT", "5432"))
        _SERVER = (host, port) if _answers(host, port) else _start_cluster()
    return _SERVER


def create_database(template: str | None = None) -> str:
    """A fresh database, empty or a copy of ``template`` (a database URL); returns its SQLAlchemy URL.

    Copying a migrated template takes a fraction of running the migrations, which most tests would repeat."""
    host, port = server()
    name = f"kipu_t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    source = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    conn.cursor().execute(f'CREATE DATABASE "{name}"{source}')
    conn.close()
    return f"postgresql+psycopg2://postgres@{host}:{port}/{name}"


def drop_database(url: str) -> None:
    host, port = server()
    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
