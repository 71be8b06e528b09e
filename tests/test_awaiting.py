"""Posts the platform accepts but names only after moderation (TikTok): recorded "awaiting moderation" by a real
workflow run, never re-posted by a retry or a crash, and settled by ``kipu_awaiting``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kipu.platforms.tiktok.hook import TikTokHook
from kipu.publishing import deliver, request_for, retry_post, settle_awaiting
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Post, WorkflowRun
from kipu.store.workflows import save_workflow
from sqlalchemy import select

from tests.conftest import REPO
from tests.fakes.tiktok_server import TikTokServer
from tests.videos import make_video

pytestmark = pytest.mark.slow
CAPTION = "Sourdough in 30 seconds #bread"


@pytest.fixture
def tiktok(pg_demo_team: dict, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TikTokServer]:
    monkeypatch.setattr(TikTokHook, "poll_interval", 0.05)
    monkeypatch.setattr(TikTokHook, "processing_timeout", 2.0)
    monkeypatch.setattr(TikTokHook, "endpoint_rates", {})
    with TikTokServer() as fake:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KIPU_TIKTOK_APP",
            json.dumps(
                {
                    "conn_type": "kipu_tiktok_app",
                    "login": fake.state.client_key,
                    "password": fake.state.client_secret,
                    "extra": {"redirect_uri": "https://kipu.example/cb", "token_url": f"{fake.url}/v2/oauth/token/"},
                }
            ),
        )
        tokens = fake.state.issue()
        with session_scope() as s:
            upsert_connection(
                s,
                find_team(s, "demo"),
                "tiktok",
                fake.state.open_id,
                username="Ana",
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                metadata={"base_url": fake.url},
            )
            save_workflow(
                s,
                {
                    "name": "To TikTok",
                    "slug": "to_tiktok",
                    "team": "demo",
                    "status": "active",
                    "trigger": {"type": "manual"},
                    "steps": [
                        {
                            "id": "publish_tiktok",
                            "type": "publish",
                            "connection_id": f"tiktok:{fake.state.open_id}",
                            "platform": "tiktok",
                            "config": {"platform_options": {"privacy_level": "PUBLIC_TO_EVERYONE"}},
                        }
                    ],
                },
            )
        yield fake


def run_workflow(clip: Path, key: str) -> tuple[str, WorkflowRun, Post]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["kipu.demo.to_tiktok"]
    item = {
        "platform": "feed",
        "platform_post_id": key,
        "content_type": "video",
        "caption": CAPTION,
        "media": [{"url": str(clip), "mime_type": "video/mp4"}],
    }
    dag_run = dag.test(run_conf={"item": item})
    with session_scope() as s:
        run = s.scalar(select(WorkflowRun).where(WorkflowRun.platform_post_id == key))
        post = s.scalar(select(Post).where(Post.workflow_run_id == run.id))
        s.expunge_all()
    return dag_run.state, run, post


def test_moderation_is_awaiting_in_a_real_run_and_settled_later(tiktok: TikTokServer, tmp_path: Path) -> None:
    tiktok.state.moderation_pending = True
    state, run, post = run_workflow(make_video(tmp_path / "clip.mp4"), "tt-1")
    assert state == "success" and run.status == "completed"  # delivered: not failed, not partial
    (publish_id,) = tiktok.state.publishes
    assert post.status == "awaiting_moderation" and post.metadata_["publish_ref"] == publish_id
    assert post.platform_post_id is None

    # A retry by hand asks TikTok with the publish_id; it does not post again.
    assert retry_post(post.id)["status"] == "awaiting_moderation"
    assert settle_awaiting() == {"checked": 1, "published": 0, "failed": 0, "awaiting": 1, "errors": 0}

    tiktok.state.release()
    assert settle_awaiting()["published"] == 1
    with session_scope() as s:
        settled = s.get(Post, post.id)
        assert settled.status == "published"
        assert settled.platform_post_id == tiktok.state.posts[0]["video"]["id"]
    assert len(tiktok.state.posts) == 1 and len(tiktok.state.publishes) == 1
    assert settle_awaiting()["checked"] == 0


def test_refused_in_moderation_ends_failed_with_tiktoks_reason(tiktok: TikTokServer, tmp_path: Path) -> None:
    tiktok.state.moderation_pending = True
    _, _, post = run_workflow(make_video(tmp_path / "clip.mp4"), "tt-2")
    tiktok.state.fail_reason = "spam_risk_too_many_posts"  # moderation refuses it
    assert settle_awaiting()["failed"] == 1
    with session_scope() as s:
        failed = s.get(Post, post.id)
        assert failed.status == "failed" and "spam_risk_too_many_posts" in failed.error_message


def test_a_crash_after_tiktok_has_the_video_never_posts_it_twice(
    tiktok: TikTokServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after the upload, before the outcome is recorded: the handle was stored at once."""
    tiktok.state.moderation_pending = True
    tiktok.state.polls_to_finish = 1
    clip = make_video(tmp_path / "clip.mp4")
    with session_scope() as s:
        conn = s.scalar(select(Connection).where(Connection.platform == "tiktok"))
        post = Post(
            id=uuid.uuid4(),
            team_id=conn.team_id,
            connection_id=conn.id,
            platform="tiktok",
            content_type="video",
            caption=CAPTION,
            media_urls=[str(clip)],
            status="publishing",
        )
        s.add(post)
        s.flush()
        request = request_for(s, post).model_copy(
            update={"options": {"platform_options": {"privacy_level": "PUBLIC_TO_EVERYONE"}}}
        )
        from kipu.platforms import target_hook

        hook = target_hook(conn)

    original, crashed = TikTokHook._await, []

    def crash_once(self: TikTokHook, *args: object, **kwargs: object) -> object:
        if not crashed:
            crashed.append(True)
            raise SystemExit("the worker died")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TikTokHook, "_await", crash_once)
    with pytest.raises(SystemExit):
        deliver(hook, request)
    (publish_id,) = tiktok.state.publishes
    with session_scope() as s:
        assert s.get(Post, post.id).metadata_["publish_ref"] == publish_id
    tiktok.state.release()
    with session_scope() as s:
        again = request_for(s, s.get(Post, post.id))
    result = deliver(hook, again.model_copy(update={"options": request.options}))
    assert not result.awaiting and result.platform_post_id == tiktok.state.posts[0]["video"]["id"]
    assert len(tiktok.state.publishes) == 1 and len(tiktok.state.posts) == 1
