"""kipu.hooks.media against moto's S3 server: staging of local files (multipart), presigned URLs that work and expire,
streaming of s3:// and http(s) media with size limits, and video probing of real MP4s."""

from __future__ import annotations

import hashlib
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from kipu.hooks.base import Rejected, Transient
from kipu.hooks.media import VideoLimits, check_video, open_media, probe_video, public_url

from tests.conftest import REPO
from tests.fakes.s3_server import CONN_ENV
from tests.videos import make_video

if TYPE_CHECKING:  # imported by pytest as a plugin, not here (its asserts are rewritten then)
    from tests.s3_fixtures import S3Media

pytest_plugins = ["tests.s3_fixtures"]  # the s3_server and s3_media fixtures
MIB = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_get(url: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()[:300]
        for block in resp.iter_bytes(MIB):
            digest.update(block)
    return digest.hexdigest()


def sparse_file(path: Path, size: int) -> Path:
    """A sparse file with a few marks, so a misplaced part would change the digest."""
    with path.open("wb") as fh:
        fh.truncate(size)
        for offset in (0, 8 * MIB - 3, 8 * MIB + 5, size - 7):
            fh.seek(offset)
            fh.write(b"KIPU")
    return path


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where open_media spools remote media in this test, to see that nothing is left behind."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_local_file_is_staged_multipart_and_served_presigned(s3_media: S3Media, tmp_path: Path) -> None:
    video = sparse_file(tmp_path / "clip.mp4", 20 * MIB)
    url = public_url(str(video), "tiktok")
    assert url.startswith(s3_media.url) and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # SigV4, not SigV2
    [key] = s3_media.keys()
    assert key.startswith("kipu-staging/") and key.endswith("/clip.mp4")
    head = s3_media.server.client().head_object(Bucket=s3_media.bucket, Key=key)
    # boto3 sent it in parts (8 MiB each by default): S3's ETag of a multipart object ends with "-<parts>".
    assert head["ContentLength"] == 20 * MIB and head["ETag"].endswith('-3"')
    assert sha256_get(url) == sha256_file(video)
    # The same file again (also as file://) is not uploaded twice.
    again = public_url(video.as_uri(), "tiktok")
    assert s3_media.keys() == [key] and sha256_get(again) == sha256_file(video)
    modified = sparse_file(tmp_path / "clip.mp4", 20 * MIB + 1)
    public_url(str(modified), "tiktok")
    assert len(s3_media.keys()) == 2  # a changed file is a new object, never a stale one


def test_presigned_urls_expire(s3_media: S3Media, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes((REPO / "include/demo/media/sunrise.png").read_bytes())
    # X-Amz-Date has whole seconds, so a 1-second URL may have only milliseconds left when it is used: 2 seconds.
    url = public_url(str(image), "instagram", expires=2)
    assert "X-Amz-Expires=2&" in url
    assert httpx.get(url).content == image.read_bytes()
    time.sleep(3.1)
    expired = httpx.get(url)
    assert expired.status_code == 403 and "Request has expired" in expired.text
    fresh = public_url(str(image), "instagram")
    assert "X-Amz-Expires=3600&" in fresh and httpx.get(fresh).status_code == 200


def test_s3_urls_are_presigned_and_https_urls_pass_through(s3_media: S3Media) -> None:
    s3_media.server.client().put_object(Bucket=s3_media.bucket, Key="library/a b.txt", Body=b"hello s3")
    url = public_url(f"s3://{s3_media.bucket}/library/a b.txt", "threads", expires=60)
    assert "X-Amz-Expires=60&" in url and httpx.get(url).content == b"hello s3"
    assert public_url("https://cdn.example/x.mp4?sig=1", "threads") == "https://cdn.example/x.mp4?sig=1"


def test_a_local_file_without_a_bucket_is_rejected_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_MEDIA_S3_BUCKET", raising=False)
    video = make_video(tmp_path / "v.mp4")
    with pytest.raises(Rejected, match="set KIPU_MEDIA_S3_BUCKET") as exc:
        public_url(str(video), "instagram")
    assert "instagram" in str(exc.value) and "kipu_media_s3" in str(exc.value)


def test_a_missing_local_file_is_rejected(s3_media: S3Media, tmp_path: Path) -> None:
    with pytest.raises(Rejected, match="does not exist"):
        public_url(str(tmp_path / "nope.mp4"), "tiktok")
    assert s3_media.keys() == []


def test_open_media_streams_an_s3_object_within_the_limit(s3_media: S3Media, spool_dir: Path) -> None:
    body = bytes(range(256)) * (3 * MIB // 256) + b"tail"
    s3_media.server.client().put_object(Bucket=s3_media.bucket, Key="m/clip.mp4", Body=body)
    url = f"s3://{s3_media.bucket}/m/clip.mp4"
    with open_media(url, 4 * MIB, "youtube", "video/mp4") as media:
        assert media.size == len(body) and media.mime_type == "video/mp4"
        assert b"".join(media.chunks(MIB)) == body
        assert media.read_range(3 * MIB - 2, 6) == body[3 * MIB - 2 : 3 * MIB + 4]
        assert media.path.parent == spool_dir
    assert list(spool_dir.iterdir()) == []
    with pytest.raises(Rejected, match=f"over the limit of {MIB} bytes"), open_media(url, MIB, "youtube"):
        pass
    assert list(spool_dir.iterdir()) == []


def test_open_media_of_a_missing_s3_object_is_rejected(s3_media: S3Media, spool_dir: Path) -> None:
    missing = f"s3://{s3_media.bucket}/nothing-here.mp4"
    with pytest.raises(Rejected, match="does not exist in S3"), open_media(missing, MIB, "youtube"):
        pass


def test_unreachable_s3_is_transient(s3_media: S3Media, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = json.loads(s3_media.server.connection_env())
    conn["extra"] |= {"endpoint_url": f"http://127.0.0.1:{port}", "config_kwargs": {"retries": {"max_attempts": 1}}}
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))
    url = f"s3://{s3_media.bucket}/clip.mp4"
    with pytest.raises(Transient, match="cannot be reached in S3 now"), open_media(url, MIB, "youtube"):
        pass


def test_open_media_of_an_http_url_streams_and_refuses_over_the_limit(s3_media: S3Media, spool_dir: Path) -> None:
    body = b"v" * (2 * MIB + 17)
    s3_media.server.client().put_object(Bucket=s3_media.bucket, Key="web/clip.mp4", Body=body)
    url = public_url(f"s3://{s3_media.bucket}/web/clip.mp4", "pinterest")
    with open_media(url, 3 * MIB, "pinterest") as media:
        assert media.size == len(body) and media.path.read_bytes() == body
    assert list(spool_dir.iterdir()) == []
    with pytest.raises(Rejected, match=f"over the limit of {MIB} bytes") as exc, open_media(url, MIB, "pinterest"):
        pass
    # A presigned URL's signature and credential stay out of messages (they end up in logs and the UI).
    assert "Signature" not in str(exc.value) and "Credential" not in str(exc.value)
    assert str(exc.value).endswith(f"/web/clip.mp4 is over the limit of {MIB} bytes")
    assert list(spool_dir.iterdir()) == []  # the partial spool is gone


def test_open_media_of_a_missing_http_file_is_rejected_not_retried(s3_media: S3Media, spool_dir: Path) -> None:
    missing = public_url(f"s3://{s3_media.bucket}/gone.mp4", "pinterest")
    with pytest.raises(Rejected, match="HTTP 404"), open_media(missing, MIB, "pinterest"):
        pass
    assert list(spool_dir.iterdir()) == []


def test_probe_and_check_a_real_video(tmp_path: Path) -> None:
    portrait = make_video(tmp_path / "portrait.mp4", seconds=2.0, width=72, height=128)
    info = probe_video(portrait)
    assert info.duration == pytest.approx(2.0, abs=0.2)
    assert (info.width, info.height, info.size) == (72, 128, portrait.stat().st_size)
    assert info.aspect_ratio == pytest.approx(72 / 128)
    reels = VideoLimits(max_bytes=10 * MIB, min_duration=3, max_duration=90, min_aspect=0.5, max_aspect=0.6)
    assert check_video(str(portrait), reels, "instagram") == ["instagram video is 2.0s long, under the minimum of 3s"]
    landscape = make_video(tmp_path / "landscape.mp4", seconds=1.0, width=128, height=72)
    problems = check_video(landscape.as_uri(), VideoLimits(max_duration=0.5, max_aspect=1.0), "tiktok")
    assert problems == [
        "tiktok video is 1.0s long, over the limit of 0.5s",
        "tiktok video aspect ratio 1.778 is over the maximum of 1.000",
    ]
    assert check_video(str(portrait), VideoLimits(min_aspect=0.6), "youtube") == [
        "youtube video aspect ratio 0.562 is under the minimum of 0.600"
    ]
    assert check_video(str(portrait), VideoLimits(max_duration=60), "youtube") == []


def test_check_video_names_size_and_unreadable_files(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    [too_big] = check_video(str(video), VideoLimits(max_bytes=100), "tiktok")
    assert "over the limit of 100 bytes" in too_big
    assert check_video(str(REPO / "include/demo/media/sunrise.png"), VideoLimits(), "tiktok") == [
        "media sunrise.png is a still image (png_pipe), not a video"
    ]
    [garbage] = check_video(str(REPO / "include/demo/media/tour.mp4"), VideoLimits(), "tiktok")  # a placeholder
    assert garbage.startswith("media tour.mp4 is not a readable video")
    [missing] = check_video(str(tmp_path / "none.mp4"), VideoLimits(), "tiktok")
    assert "does not exist" in missing


def test_a_video_read_back_from_s3_probes_the_same(s3_media: S3Media, tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=1.5, width=96, height=96)
    s3_media.server.client().upload_file(str(video), s3_media.bucket, "v/v.mp4")
    with open_media(f"s3://{s3_media.bucket}/v/v.mp4", 10 * MIB, "youtube") as media:
        assert probe_video(media.path) == probe_video(video)
