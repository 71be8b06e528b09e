"""S3 fixtures (import them into a test module): one moto S3 server per session, emptied for every test, with
``KIPU_MEDIA_S3_BUCKET`` and the ``kipu_media_s3`` Airflow connection pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fakes.s3_server import CONN_ENV, S3Server

BUCKET = "kipu-media-test"


@dataclass(frozen=True)
class S3Media:
    url: str
    bucket: str
    server: S3Server

    def keys(self) -> list[str]:
        return self.server.keys(self.bucket)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_media(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Media]:
    """An empty media bucket in moto; Kipu stores media there while the test runs."""
    s3_server.reset()
    s3_server.create_bucket(BUCKET)
    monkeypatch.setenv(CONN_ENV, s3_server.connection_env())
    monkeypatch.setenv("KIPU_MEDIA_S3_BUCKET", BUCKET)
    monkeypatch.delenv("KIPU_MEDIA_S3_CONN_ID", raising=False)
    yield S3Media(s3_server.url, BUCKET, s3_server)
