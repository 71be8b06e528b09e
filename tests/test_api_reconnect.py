"""The posts list after PostgreSQL restarts: its async pool has no pre-ping, so ``read_all`` must drop the dead
connections and read again, and the first request after the restart still answers 200."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from kipu.api.app import create_app
from kipu.store.engine import reset_engines
from kipu.store.migrate import upgrade

from tests import pg
from tests.api_helpers import token_for
from tests.conftest import seed_demo_team, use_store


@pytest.fixture
def cluster_store() -> Iterator[pg.Cluster]:
    cluster = pg.Cluster()
    url = cluster.create_database()
    upgrade(url)
    use_store(url)
    seed_demo_team()
    yield cluster
    reset_engines()
    cluster.destroy()


def test_the_list_survives_a_database_restart(cluster_store: pg.Cluster) -> None:
    headers = token_for("viewer@demo.test")
    with TestClient(create_app()) as api:
        assert api.get("/api/posts", headers=headers).status_code == 200  # the pool now holds a connection
        cluster_store.stop()
        cluster_store.start()
        after = api.get("/api/posts", headers=headers)
        assert after.status_code == 200, after.text
        assert after.json() == {"items": [], "next_cursor": None}
