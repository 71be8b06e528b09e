"""The workflows API under odd load: two creates of one slug at once, and a manual item's caption that is bounded
and costs work in proportion to its size."""

from __future__ import annotations

import threading
import time

from tests.helpers import demo_doc

API = "/kipu/api"


def test_two_creates_of_one_slug_at_once_give_201_and_409_never_500(api, roles: dict) -> None:
    doc = demo_doc(slug="raced_slug", name="Raced", status="inactive")
    barrier = threading.Barrier(2)
    codes: list[object] = []

    def one() -> None:
        barrier.wait()
        try:
            codes.append(api.post(f"{API}/workflows", json=doc, headers=roles["member"]).status_code)
        except Exception as exc:  # TestClient re-raises the server's exception: that is a 500
            codes.append(f"500 ({type(exc).__name__}: {str(exc)[:200]} cause={exc.__cause__!r:.200})")

    for _ in range(5):  # the window is small; a few rounds
        codes.clear()
        doc["slug"] = f"raced_{time.monotonic_ns()}"
        threads = [threading.Thread(target=one) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(map(str, codes)) == ["201", "409"], codes


def test_a_viewer_preview_with_a_big_caption_is_refused_or_fast(api, roles: dict) -> None:
    """A viewer's dry run of a manual item: the caption has no length limit, and the rewriter's entity scan is
    quadratic in the number of links/mentions/hashtags (captions/entities.py find()). 120 k characters here; the
    1 MiB body limit allows ~8x more (~64x the time)."""
    created = api.post(
        f"{API}/workflows", json=demo_doc(slug="big_caption", status="inactive"), headers=roles["member"]
    )
    assert created.status_code == 201, created.text
    wf = created.json()["id"]
    caption = "hi @m #t https://e.co/a " * 5000  # 120,000 characters
    started = time.monotonic()
    out = api.post(
        f"{API}/workflows/{wf}/preview",
        json={"item": {"caption": caption, "media": [{"url": "https://example.com/v.mp4"}], "duration_seconds": 5}},
        headers=roles["viewer"],
    )
    took = time.monotonic() - started
    assert out.status_code == 422 and out.json()["detail"][0]["loc"][-1] == "caption", out.text
    assert took < 2.0, f"{took:.1f}s"
    # Within the limit, a caption full of tags, mentions and links costs linear work (it was quadratic).
    fits = ("hi @m #t https://e.co/a " * 2700)[:60_000]
    started = time.monotonic()
    ok = api.post(
        f"{API}/workflows/{wf}/preview",
        json={"item": {"caption": fits, "media": [{"url": "https://example.com/v.mp4"}], "duration_seconds": 5}},
        headers=roles["viewer"],
    )
    assert ok.status_code == 200, ok.text
    assert time.monotonic() - started < 3.0
