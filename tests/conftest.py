"""Test settings: an isolated AIRFLOW_HOME and KIPU_HOME, a test encryption key, and store fixtures."""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="kipu-tests-"))
# Airflow reads these at import time, so they are set before anything imports it.
os.environ.update(
    {
        "AIRFLOW_HOME": str(_TMP / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(_TMP / "airflow" / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # As deployed (docs/deploy.md): a changed DAG is written on its parse request, however recent the last write.
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "KIPU_HOME": str(_TMP / "kipu"),
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        # Signs the Airflow JWTs the API tests present to the mounted /kipu app.
        "AIRFLOW__API_AUTH__JWT_SECRET": Fernet.generate_key().decode(),
        # The fake platforms listen on 127.0.0.1: the egress guard's demo-and-tests setting. The tenant-safety
        # tests turn it off to check the guard itself.
        "KIPU_EGRESS_ALLOW_PRIVATE": "1",
    }
)
os.environ.pop("KIPU_DATABASE_URL", None)

from tests import pg  # noqa: E402

# Airflow's metadata database is real PostgreSQL too: dag.test() and a concurrent HITL answer need row locks.
_AIRFLOW_DB = pg.create_database()
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = _AIRFLOW_DB
atexit.register(pg.drop_database, _AIRFLOW_DB)
os.environ.pop("ENCRYPTION_KEY_FILE", None)
(_TMP / "airflow" / "plugins").mkdir(parents=True, exist_ok=True)


def use_store(url: str) -> None:
    """Point every Kipu component at ``url``."""
    from kipu.store.engine import reset_engines

    os.environ["KIPU_DATABASE_URL"] = url
    reset_engines()


@pytest.fixture(autouse=True)
def _no_shard_status() -> None:
    """Each test starts with no recorded shard parse: a store outage in one must not fail another's status file."""
    from kipu.factory.status import status_path

    for path in status_path(None).parent.glob("dag_status.*.json"):
        path.unlink(missing_ok=True)


_TEMPLATES: dict[str, str] = {}


def migrated_template(kind: str) -> str:
    """A store migrated to head once per session, which each test's store copies (SQLite file, PostgreSQL TEMPLATE)."""
    if kind not in _TEMPLATES:
        from kipu.store.migrate import upgrade

        if kind == "sqlite":
            url = f"sqlite:///{_TMP / 'template.db'}"
        else:
            url = pg.create_database()
            atexit.register(pg.drop_database, url)
        upgrade(url)
        _TEMPLATES[kind] = url
    return _TEMPLATES[kind]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    import shutil

    shutil.copyfile(migrated_template("sqlite").removeprefix("sqlite:///"), tmp_path / "kipu.db")
    url = f"sqlite:///{tmp_path / 'kipu.db'}"
    use_store(url)
    yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    from kipu.store.engine import reset_engines

    url = pg.create_database(template=migrated_template("postgres"))
    use_store(url)
    yield url
    reset_engines()
    pg.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The store on SQLite and on real PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (PostgreSQL) for this test session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def demo_team(store_url: str) -> dict:
    """The demo team on SQLite and on PostgreSQL."""
    return seed_demo_team()


@pytest.fixture
def pg_demo_team(pg_url: str) -> dict:
    """The demo team on PostgreSQL only (for the slower end-to-end runs)."""
    return seed_demo_team()


def seed_demo_team() -> dict:
    """A team with an owner (Airflow user 'admin'), a member and a viewer, a feed and an outbox."""
    from kipu.store.accounts import add_member, get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope

    outbox = Path(os.environ["KIPU_HOME"]) / "outbox" / os.urandom(4).hex()
    with session_scope() as s:
        owner = get_or_create_profile(s, "owner@demo.test", "Owner", airflow_username="admin")
        team = get_or_create_team(s, "Demo", owner, "demo")
        add_member(s, team, get_or_create_profile(s, "editor@demo.test"), "member")
        add_member(s, team, get_or_create_profile(s, "viewer@demo.test"), "viewer")
        upsert_connection(s, team, "feed", "demo", metadata={"url": str(REPO / "include/demo/feed.xml")})
        upsert_connection(
            s, team, "outbox", "demo", metadata={"path": str(outbox)}, access_token="tok-OUTBOX-SECRET-0001"
        )
        other = get_or_create_team(s, "Other", get_or_create_profile(s, "boss@other.test"), "other")
        upsert_connection(s, other, "outbox", "theirs", metadata={"path": str(outbox) + "-other"})
    return {"team": "demo", "outbox": outbox}


_APP: list[Any] = []


@pytest.fixture
def api(airflow_db: Path, pg_demo_team: dict) -> Iterator[Any]:
    """Airflow's own API server app (``create_app("all")``), in which the Kipu plugin mounts /kipu. Built once per
    session: it keeps no state of a test's (the Kipu app reads the store and the settings on every request)."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    if not _APP:
        _APP.append(create_app("all"))
    with TestClient(_APP[0]) as client:
        yield client


@contextlib.contextmanager
def dag_folder_parsed() -> Iterator[None]:
    """Airflow's DAG tables hold the DAG folder's DAGs, as after a first parse; afterwards the DAGs it added are
    deleted again, so no later test in this worker finds a DAG it did not parse (the metadata database is shared)."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    with create_session() as s:
        before = set(s.scalars(select(DagModel.dag_id)))
    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=str(REPO / "dags"), bundle_path=REPO / "dags", bundle_name="dags-folder")
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as s:  # as if the dag-processor had taken the requests the stores made
        s.execute(delete(DagPriorityParsingRequest))
    try:
        yield
    finally:
        with create_session() as s:
            added = set(s.scalars(select(DagModel.dag_id))) - before
            for dag_id in sorted(added):
                delete_dag(dag_id, keep_records_in_log=False, session=s)
            s.execute(delete(DagPriorityParsingRequest))


# Fixtures that need Airflow's metadata database, its API server app, or processes of the deployed stack: tests
# using them are left out of ``make test-fast``.
AIRFLOW_FIXTURES = frozenset({"airflow_db", "api", "roles", "airflow_server", "kipu_serve"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if AIRFLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.airflow)


@pytest.fixture
def roles(api: Any) -> dict[str, dict[str, str]]:
    """Authorization headers per role in team 'demo', plus the owner of team 'other'."""
    from tests.api_helpers import token_for

    return {
        "owner": token_for("owner@demo.test"),
        "member": token_for("editor@demo.test"),
        "viewer": token_for("viewer@demo.test"),
        "outsider": token_for("boss@other.test"),
    }
