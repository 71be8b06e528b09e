"""The media library on S3 (moto) through the /kipu API in Airflow's API server app: uploads streamed to the bucket
with the S3Hook (multipart for large files), presigned URLs that download the same bytes and expire, and nothing left
in the bucket or the store when an upload is refused or fails."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from kipu.api.routes.media import _upload_s3
from kipu.config import kipu_home

from tests.conftest import REPO
from tests.fakes.s3_server import CONN_ENV
from tests.test_api import no_token_in_any_response  # noqa: F401  (every response is checked for tokens)

if TYPE_CHECKING:  # imported by pytest as a plugin, not here (its asserts are rewritten then)
    from tests.s3_fixtures import S3Media

pytest_plugins = ["tests.s3_fixtures"]  # the s3_server and s3_media fixtures
API = "/kipu/api"
MIB = 1 << 20
PNG = (REPO / "include/demo/media/sunrise.png").read_bytes()
MP4_HEAD = (REPO / "include/demo/media/pasta.mp4").read_bytes()[:4096]


def upload(
    api: TestClient, headers: dict[str, str], name: str, data: bytes, mime: str, **params: str
) -> httpx.Response:
    return api.post(
        f"{API}/media/upload", params={"team": "demo", **params}, files={"file": (name, data, mime)}, headers=headers
    )


def listed(api: TestClient, headers: dict[str, str], **params: str) -> list[dict]:
    out = api.get(f"{API}/media", params={"team": "demo", **params}, headers=headers)
    assert out.status_code == 200, out.text
    return out.json()


def local_files() -> list[str]:
    folder = kipu_home() / "media"
    return [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_upload_goes_to_s3_and_is_served_presigned(api: TestClient, roles: dict, s3_media: S3Media) -> None:
    before = local_files()
    folder = api.post(f"{API}/media/folders", json={"team": "demo", "name": "Brand"}, headers=roles["member"]).json()
    up = upload(api, roles["member"], "sun rise.png", PNG, "image/png", folder_id=folder["id"])
    assert up.status_code == 201, up.text
    media = up.json()
    [key] = s3_media.keys()
    assert media["storage_path"] == f"s3://{s3_media.bucket}/{key}"
    assert key.startswith("media/") and key.endswith(f"/{media['id']}/sun rise.png")
    assert media["size_bytes"] == len(PNG) and media["folder_id"] == folder["id"] and media["mime_type"] == "image/png"
    head = s3_media.server.client().head_object(Bucket=s3_media.bucket, Key=key)
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(PNG)
    assert local_files() == before  # nothing on the API server's disk
    # The URL is presigned (SigV4, 15 minutes by default) and downloads the same bytes.
    assert media["url"].startswith(s3_media.url) and "X-Amz-Expires=900&" in media["url"]
    expires = datetime.fromisoformat(media["url_expires_at"])
    assert timedelta(seconds=880) < expires - datetime.now(UTC) <= timedelta(seconds=900)
    got = httpx.get(media["url"])
    assert got.content == PNG and got.headers["content-type"] == "image/png"
    # The list and the item (viewer) return the S3 path and a fresh presigned URL.
    [item] = listed(api, roles["viewer"], folder_id=folder["id"])
    assert item["id"] == media["id"] and item["storage_path"] == media["storage_path"]
    assert httpx.get(item["url"]).content == PNG
    one = api.get(f"{API}/media/{media['id']}", headers=roles["viewer"])
    assert one.status_code == 200 and one.json()["storage_path"] == media["storage_path"]
    assert httpx.get(one.json()["url"]).content == PNG


def test_presigned_library_urls_are_short_lived(
    api: TestClient, roles: dict, s3_media: S3Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = upload(api, roles["member"], "a.png", PNG, "image/png").json()
    monkeypatch.setenv("KIPU_MEDIA_URL_SECONDS", "2")  # X-Amz-Date has whole seconds: 1 s may be nearly gone
    url = api.get(f"{API}/media/{media['id']}", headers=roles["viewer"]).json()["url"]
    assert "X-Amz-Expires=2&" in url and httpx.get(url).status_code == 200
    time.sleep(3.1)
    expired = httpx.get(url)
    assert expired.status_code == 403 and "Request has expired" in expired.text


def test_a_large_upload_is_sent_in_parts(api: TestClient, roles: dict, s3_media: S3Media) -> None:
    data = MP4_HEAD + os.urandom(10 * MIB + 123)  # an MP4 by its magic bytes: uploads are sniffed
    up = upload(api, roles["member"], "long.mp4", data, "video/mp4")
    assert up.status_code == 201, up.text
    [key] = s3_media.keys()
    head = s3_media.server.client().head_object(Bucket=s3_media.bucket, Key=key)
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-2"')  # 8 MiB parts: a multipart upload
    assert hashlib.sha256(httpx.get(up.json()["url"]).content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_over_the_limit_is_413_and_leaves_nothing(
    api: TestClient, roles: dict, s3_media: S3Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIPU_MEDIA_MAX_BYTES", "1000")
    big = upload(api, roles["member"], "big.mp4", b"0" * 5000, "video/mp4")  # within the header slack
    assert big.status_code == 413 and "over the limit of 1000 bytes" in big.text
    monkeypatch.setenv("KIPU_MEDIA_MAX_BYTES", str(MIB))
    huge = upload(api, roles["member"], "huge.mp4", b"0" * (2 * MIB), "video/mp4")  # refused by Content-Length
    assert huge.status_code == 413 and f"over the limit of {MIB} bytes" in huge.text
    assert s3_media.keys() == [] and s3_media.server.pending_uploads(s3_media.bucket) == []
    assert listed(api, roles["viewer"]) == []


class Stream:
    """A forward-only body (no seek), as a slow client would send it."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return b"x" * n


def test_a_stream_over_the_limit_mid_upload_aborts_the_multipart_upload(s3_media: S3Media) -> None:
    """The limit is also checked while streaming: 413 after two 8 MiB parts, and S3 keeps no part of it."""
    with pytest.raises(HTTPException) as exc:
        _upload_s3(Stream(30 * MIB), s3_media.bucket, "media/t/m/big.mp4", "video/mp4", 20 * MIB)
    assert exc.value.status_code == 413 and f"over the limit of {20 * MIB} bytes" in str(exc.value.detail)
    assert s3_media.keys() == [] and s3_media.server.pending_uploads(s3_media.bucket) == []
    assert _upload_s3(Stream(20 * MIB), s3_media.bucket, "media/t/m/ok.mp4", "video/mp4", 20 * MIB) == 20 * MIB
    assert s3_media.keys() == ["media/t/m/ok.mp4"]


def test_wrong_type_viewer_and_outsider_are_refused(api: TestClient, roles: dict, s3_media: S3Media) -> None:
    wrong = upload(api, roles["member"], "x.exe", b"MZ", "application/x-msdownload")
    assert wrong.status_code == 415 and "application/x-msdownload" in wrong.text
    missing = api.post(f"{API}/media/upload", params={"team": "demo"}, headers=roles["member"])
    assert missing.status_code == 422 and "file" in missing.text  # no file part
    assert upload(api, roles["viewer"], "a.png", PNG, "image/png").status_code == 403
    assert upload(api, roles["outsider"], "a.png", PNG, "image/png").status_code == 404
    assert s3_media.keys() == []
    mine = upload(api, roles["member"], "a.png", PNG, "image/png").json()
    theirs = api.get(f"{API}/media/{mine['id']}", headers=roles["outsider"])
    assert theirs.status_code == 404 and "X-Amz" not in theirs.text
    assert api.get(f"{API}/media", params={"team": "demo"}, headers=roles["outsider"]).status_code == 404


def test_s3_down_is_503_and_records_nothing(
    api: TestClient, roles: dict, s3_media: S3Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = json.loads(s3_media.server.connection_env())
    conn["extra"] |= {"endpoint_url": f"http://127.0.0.1:{port}", "config_kwargs": {"retries": {"max_attempts": 1}}}
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))
    down = upload(api, roles["member"], "a.png", PNG, "image/png")
    assert down.status_code == 503 and "kipu_media_s3" in down.text
    assert "testing" not in down.text  # no credential in the answer
    monkeypatch.setenv(CONN_ENV, s3_media.server.connection_env())
    assert listed(api, roles["viewer"]) == [] and s3_media.keys() == []
