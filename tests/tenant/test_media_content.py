"""Class 9: media is what it claims to be. The first bytes are sniffed (puremagic) before anything is stored: an
executable or a page declared as an image is 415, an empty file 422; real images and videos pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from kipu.config import kipu_home

from tests.conftest import REPO

if TYPE_CHECKING:
    from tests.s3_fixtures import S3Media

pytest_plugins = ["tests.s3_fixtures"]
API = "/kipu/api"
PNG = (REPO / "include/demo/media/sunrise.png").read_bytes()
MP4 = (REPO / "include/demo/media/pasta.mp4").read_bytes()
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00" + b"\x00" * 200
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200


def _upload(api, headers: dict, name: str, data: bytes, mime: str):  # type: ignore[no-untyped-def]
    return api.post(f"{API}/media/upload", params={"team": "demo"}, files={"file": (name, data, mime)}, headers=headers)


def _stored_files() -> list[str]:
    root = kipu_home() / "media"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (EXE, "image/png"),
        (HTML, "image/png"),
        (ELF, "video/mp4"),
        (PNG, "image/jpeg"),
        (MP4, "image/gif"),
        (HTML, "video/webm"),
    ],
)
def test_content_that_is_not_what_it_claims_is_415(api, roles: dict, data: bytes, mime: str) -> None:
    before = _stored_files()
    out = _upload(api, roles["member"], "innocent.png", data, mime)
    assert out.status_code == 415 and f"not the declared {mime}" in out.text, out.text
    assert _stored_files() == before


def test_an_empty_file_is_refused(api, roles: dict) -> None:
    out = _upload(api, roles["member"], "empty.png", b"", "image/png")
    assert out.status_code == 422 and out.json()["detail"][0]["loc"] == ["body", "file"]
    assert "empty" in out.text


def test_real_media_passes(api, roles: dict) -> None:
    assert _upload(api, roles["member"], "sunrise.png", PNG, "image/png").status_code == 201
    assert _upload(api, roles["member"], "pasta.mp4", MP4, "video/mp4").status_code == 201
    # An iPhone .mov and an .mp4 share one container (ISO BMFF): either name is the truth.
    out = _upload(api, roles["member"], "pasta.mov", MP4, "video/quicktime")
    assert out.status_code == 201 and out.json()["ref"] == f"kipu-media:{out.json()['id']}"


def test_nothing_reaches_s3_for_a_mismatch(api, roles: dict, s3_media: S3Media) -> None:
    assert _upload(api, roles["member"], "x.png", EXE, "image/png").status_code == 415
    assert s3_media.keys() == []
    assert _upload(api, roles["member"], "x.png", PNG, "image/png").status_code == 201
    assert len(s3_media.keys()) == 1
