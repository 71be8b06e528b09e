"""Kipu's pages in a real browser: Debian's headless Chromium, driven by Selenium, against a real ``airflow
api-server`` with the Kipu plugin. The tests sign in through Airflow's own login page, use Kipu's pages as a person
would (inside Airflow's UI too), and save the screenshots ``docs/ui.md`` shows."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import REPO
from tests.tenant.conftest import Server, free_port, served_store, start, stop  # noqa: F401  (a module fixture)

pytestmark = pytest.mark.slow
# Where screenshots go: tests/.artifacts/ui (ignored by git); KIPU_UI_SHOTS=docs/ui refreshes the ones docs/ui.md shows.
SHOTS = Path(os.environ.get("KIPU_UI_SHOTS") or REPO / "tests" / ".artifacts" / "ui")
PASSWORDS = {"admin": "admin-pass-1", "viewer": "viewer-pass-1", "newbie": "newbie-pass-1"}


@pytest.fixture(scope="module")
def ui_server(airflow_db: Path, served_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """``airflow api-server`` with three Airflow users: admin (demo's owner), viewer (demo's viewer) and newbie (in
    no team yet)."""
    from kipu.store.accounts import find_team, get_or_create_profile
    from kipu.store.engine import session_scope
    from kipu.store.models import Post, Workflow
    from kipu.store.workflows import save_workflow

    from tests.helpers import demo_doc

    with session_scope() as s:
        get_or_create_profile(s, "viewer@demo.test").airflow_username = "viewer"
        get_or_create_profile(s, "newbie@demo.test", "Newbie").airflow_username = "newbie"
        wf = save_workflow(s, demo_doc())
        other = find_team(s, "other")
        s.add(
            Workflow(
                id=uuid.uuid4(),
                team_id=other.id,
                name="Their secret flow",
                slug="secret",
                status="active",
                trigger_config={"type": "manual"},
                dag_id="kipu.other.secret",
            )
        )
        demo = find_team(s, "demo")
        s.add(
            Post(
                id=uuid.uuid4(),
                team_id=demo.id,
                platform="bluesky",
                caption="Sunrise bake, fresh from the oven",
                status="failed",
                error_message="Rejected: the image is too large",
            )
        )
        s.add(
            Post(
                id=uuid.uuid4(),
                team_id=demo.id,
                platform="x",
                caption="Market tour",
                status="published",
                platform_url="https://x.com/ana/status/1",
            )
        )
        s.add(Post(id=uuid.uuid4(), team_id=other.id, platform="x", caption="Their private post", status="published"))
        assert wf.id
    from tests.api_helpers import oauth_app_env
    from tests.fakes.mastodon_server import MastodonServer
    from tests.fakes.tiktok_server import TikTokServer
    from tests.fakes.x_server import XServer
    from tests.test_ui import x_app_env

    home = tmp_path_factory.mktemp("ui-server")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    x, tiktok = XServer(), TikTokServer(allow_loopback_http=True)  # Kipu runs on http://127.0.0.1 here
    mastodon = MastodonServer()
    for fake in (x, tiktok, mastodon):
        fake.__enter__()
    name, value = oauth_app_env(
        "tiktok",
        tiktok.url,
        tiktok.state.client_key,
        tiktok.state.client_secret,
        "/v2/auth/authorize/",
        "/v2/oauth/token/",
    )
    tiktok_app = json.loads(value)
    tiktok_app["extra"]["redirect_uri"] = f"{base}/kipu/api/auth/callback/tiktok"
    env = {
        name: json.dumps(tiktok_app),
        "AIRFLOW_CONN_KIPU_X_APP": x_app_env(x.url, base),
        "KIPU_MASTODON_REDIRECT_URI": f"{base}/kipu/api/auth/callback/mastodon",
        **os.environ,
        "KIPU_DATABASE_URL": served_store,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,newbie:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    cmd = [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"]
    proc = start(cmd, home / "api-server.log", f"http://127.0.0.1:{port}/api/v2/monitor/health", env)
    try:
        yield Server(base, home / "api-server.log", {"mastodon": {"url": mastodon.url}}, served_store)
    finally:
        stop(proc)
        for fake in (x, tiktok, mastodon):
            fake.__exit__()


def browser(width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    assert driver_path, (
        "the UI tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    return driver


def wait_for(driver: Any, check: Any, what: str, timeout: float = 30) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(lambda d: check(d))
    except TimeoutException:  # say where the browser was
        raise AssertionError(f"waited for {what}; at {driver.current_url}: {driver.page_source[-800:]}") from None


def sign_in(driver: Any, server: Server, user: str, page: str = "/kipu/ui/workflows") -> None:
    """Through Airflow's own login page: Kipu sends the signed-out person there, and it sends them back."""
    from selenium.webdriver.common.by import By

    driver.get(server.url + page)
    wait_for(driver, lambda d: d.find_elements(By.NAME, "username"), "Airflow's login form")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(PASSWORDS[user])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: "signed in as" in d.page_source, f"{user} back on {page}")
    if page not in driver.current_url:
        driver.get(server.url + page)


def _gone(element: Any) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_an_owner_signs_in_once_and_works_in_kipus_pages(ui_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser()
    try:
        sign_in(driver, ui_server, "admin")
        assert "kipu.demo.demo_crosspost" in driver.page_source and "Their secret flow" not in driver.page_source
        assert "kipu_" not in driver.page_source  # no Kipu API token in the browser
        shot(driver, "workflows")
        driver.find_element(By.XPATH, "//button[text()='Pause']").click()
        wait_for(driver, lambda d: "Workflow paused." in d.page_source, "the pause to be confirmed")
        assert driver.find_element(By.XPATH, "//button[text()='Activate']")

        driver.get(ui_server.url + "/kipu/ui/workflows?team=other")  # another team's: never shown
        assert "Their secret flow" not in driver.page_source

        driver.get(ui_server.url + "/kipu/ui/posts?team=demo&status=failed")
        assert "Rejected: the image is too large" in driver.page_source and "Market tour" not in driver.page_source
        assert driver.find_element(By.XPATH, "//button[text()='Retry']")
        assert "Their private post" not in driver.page_source
        driver.get(ui_server.url + "/kipu/ui/posts?team=demo")
        assert driver.find_element(By.LINK_TEXT, "open").get_attribute("href") == "https://x.com/ana/status/1"
        shot(driver, "posts")
        driver.find_element(By.LINK_TEXT, "Calendar by day").click()
        wait_for(driver, lambda d: "Calendar" in d.title, "the calendar")
        today = driver.find_element(By.XPATH, f"//div[@class='day' and text()='{datetime.now(UTC).day}']/..")
        assert "bluesky failed" in today.text and "x published" in today.text, today.text
        assert "Their private post" not in driver.page_source
        shot(driver, "calendar")
        # Every form control has a label, and keyboard focus is visible.
        unlabeled = driver.execute_script(
            "return [...document.querySelectorAll('select,input:not([type=hidden]),textarea')]"
            ".filter(el => !document.querySelector(`label[for='${el.id}']`)).length"
        )
        assert unlabeled == 0
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        outline = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline

        driver.get(ui_server.url + "/kipu/ui/connections?team=demo")
        driver.find_element(By.PARTIAL_LINK_TEXT, "Delete").click()
        wait_for(driver, lambda d: "Delete the" in d.page_source, "the confirmation page")
        shot(driver, "connections-delete")
        driver.find_element(By.LINK_TEXT, "Cancel").click()
        assert "outbox" in driver.page_source

        # Inside Airflow's own UI: the plugin's page embeds Kipu's, with the same sign-in.
        driver.get(ui_server.url + "/plugin/kipu-posts")
        frame = wait_for(driver, lambda d: d.find_elements(By.TAG_NAME, "iframe"), "Airflow's embedded Kipu page")[0]
        driver.switch_to.frame(frame)
        wait_for(driver, lambda d: "signed in as admin" in d.page_source, "Kipu's posts inside Airflow")
        driver.switch_to.default_content()
        shot(driver, "inside-airflow")
    finally:
        driver.quit()


def test_an_owner_invites_and_the_invitee_joins_on_their_own_page(ui_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    owner, newbie = browser(), browser()
    try:
        sign_in(newbie, ui_server, "newbie")
        assert "is in no Kipu team yet" in newbie.page_source and "Invitations" not in newbie.page_source
        sign_in(owner, ui_server, "admin", "/kipu/ui/team")
        owner.find_element(By.ID, "invite-email").send_keys("newbie@demo.test")
        Select(owner.find_element(By.ID, "invite-role")).select_by_value("member")
        owner.find_element(By.XPATH, "//button[text()='Invite']").click()
        wait_for(owner, lambda d: "Invited newbie@demo.test." in d.page_source, "the invitation to be confirmed")
        assert (
            "newbie@demo.test"
            in owner.find_element(By.XPATH, "//h2[text()='Pending invitations']/following::table").text
        )
        shot(owner, "team")

        newbie.get(ui_server.url + "/kipu/ui/workflows")
        assert "Invitations" in newbie.page_source and "kipu.demo.demo_crosspost" not in newbie.page_source
        newbie.find_element(By.XPATH, "//button[text()='Join']").click()
        wait_for(newbie, lambda d: "You joined demo as member." in d.page_source, "joining to be confirmed")
        assert "kipu.demo.demo_crosspost" in newbie.page_source and "Invitations" not in newbie.page_source

        owner.get(ui_server.url + "/kipu/ui/team?team=demo")
        assert "No pending invitations." in owner.page_source
        row = owner.find_element(By.XPATH, "//td[text()='newbie@demo.test']/..")
        assert "member" in row.text
        row.find_element(By.XPATH, ".//button[text()='Remove']").click()
        wait_for(owner, lambda d: "Removed newbie@demo.test." in d.page_source, "the removal to be confirmed")
    finally:
        owner.quit()
        newbie.quit()


def test_a_viewer_sees_no_edit_controls(ui_server: Server) -> None:
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        sign_in(driver, ui_server, "viewer")
        assert "kipu.demo.demo_crosspost" in driver.page_source
        for page in ("workflows", "posts", "connections", "team"):
            driver.get(f"{ui_server.url}/kipu/ui/{page}?team=demo")
            buttons = [b.text for b in driver.find_elements(By.TAG_NAME, "button") if b.text not in ("Filter", "Go")]
            assert buttons == [], (page, buttons)
            assert "Delete" not in driver.page_source
    finally:
        driver.quit()


def test_pages_fit_a_phones_width_with_labels_and_visible_focus(ui_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser(390, 844)
    try:
        sign_in(driver, ui_server, "admin", "/kipu/ui/posts")
        for page in ("workflows", "posts", "calendar", "approvals", "connections", "media", "team"):
            driver.get(f"{ui_server.url}/kipu/ui/{page}?team=demo")
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{page} is {overflow}px wider than a phone's screen"
            unlabeled = driver.execute_script(
                "return [...document.querySelectorAll('select,input:not([type=hidden]),textarea')]"
                ".filter(el => !document.querySelector(`label[for='${el.id}']`)).map(el => el.name)"
            )
            assert unlabeled == [], (page, unlabeled)
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
            outline = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), (page, outline)
            if page == "posts":
                shot(driver, "posts-phone")
    finally:
        driver.quit()


def test_an_approver_answers_in_kipu_and_the_item_is_published(
    ui_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real DAG run parks on its approval; the approver answers on Kipu's page, through Airflow's HITL handler."""
    import threading
    import time

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session
    from kipu.ingest import enter
    from kipu.platforms.feed.hook import FeedHook
    from kipu.store.engine import session_scope
    from kipu.store.models import Post, Workflow, WorkflowRun
    from kipu.store.workflows import save_workflow, set_status
    from selenium.webdriver.common.by import By
    from sqlalchemy import select

    from tests.helpers import demo_doc

    items = {i.platform_post_id: i for i in FeedHook(str(REPO / "include/demo/feed.xml")).list_posts()}
    doc = demo_doc()
    # If the browser never answers, the approval times out in 3 minutes instead of holding the suite for a day.
    next(st for st in doc["steps"] if st["id"] == "team_review")["config"]["timeout_hours"] = 0.05
    with session_scope() as s:
        save_workflow(s, doc)
        wf = s.scalar(select(Workflow).where(Workflow.slug == "demo_crosspost"))
        set_status(wf, "active")
        run_id = enter(s, wf, [items["ana-002"]])[0].workflow_run_id
    seen: dict[str, Any] = {}

    def approve() -> None:
        driver = browser()
        try:
            sign_in(driver, ui_server, "admin", "/kipu/ui/approvals")
            for _ in range(180):  # the run parks on its approval within seconds
                if "Original caption" in driver.page_source:
                    break
                time.sleep(0.5)
                driver.get(ui_server.url + "/kipu/ui/approvals")
            seen["page"] = driver.page_source
            shot(driver, "approvals")
            driver.find_element(By.NAME, "comment").send_keys("Looks good")
            driver.find_element(By.XPATH, "//button[text()='Approve']").click()
            wait_for(driver, lambda d: "Approved." in d.page_source, "the answer to be confirmed")
        except Exception as exc:  # reported by the main thread
            seen["error"] = exc
        finally:
            driver.quit()

    api_conn = {"conn_type": "http", "host": ui_server.url, "login": "admin", "password": PASSWORDS["admin"]}
    monkeypatch.setenv("AIRFLOW_CONN_KIPU_AIRFLOW_API", json.dumps(api_conn))  # finalize sets the run's note
    helper = threading.Thread(target=approve)
    helper.start()
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["kipu.demo.demo_crosspost"]
    dag_run = dag.test(run_conf={"workflow_run_id": str(run_id)})
    helper.join(60)
    assert "error" not in seen, seen.get("error")
    page = seen["page"]
    assert "Market tour" in page and "Rewritten for bluesky" in page and "Media" in page
    assert dag_run.state == "success"
    with session_scope() as s:
        assert s.get(WorkflowRun, run_id).status == "completed"
        (post,) = s.scalars(select(Post).where(Post.workflow_run_id == run_id))
        assert post.status == "published"
    with create_session() as session:  # Airflow's Required Actions page shows the same item
        detail = session.scalars(select(HITLDetail).where(HITLDetail.responded_at.is_not(None))).all()[-1]
        assert "Market tour" in detail.subject and "Rewritten for bluesky" in detail.body
        assert "/plugin/kipu-approvals" in detail.body

    from kipu.airflow_api import AirflowAPI

    rest = AirflowAPI(ui_server.url, username="admin", password=PASSWORDS["admin"])
    run = rest.request("GET", f"/dags/{dag.dag_id}/dagRuns/{quote(dag_run.run_id, safe='')}").json()
    assert run["note"] == "Market tour — published to 1 (outbox)"  # Airflow's runs list reads like a content log
    rest.close()

    driver = browser()
    try:
        sign_in(driver, ui_server, "admin", f"/kipu/ui/run?dag_id={dag.dag_id}&run_id={dag_run.run_id}")
        assert "completed" in driver.page_source and "team_review" in driver.page_source
        assert "published" in driver.page_source
        shot(driver, "run-tab")
    finally:
        driver.quit()


def test_an_admin_connects_x_and_tiktok_through_the_real_redirects(ui_server: Server) -> None:
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        sign_in(driver, ui_server, "admin", "/kipu/ui/connections?team=demo")
        for platform in ("x", "tiktok"):
            button = driver.find_element(By.XPATH, f"//button[text()='Connect {platform}']")
            button.click()
            wait_for(driver, lambda d, b=button: _gone(b), "the page to leave for the platform")
            # The platform's consent page (the fake consents at once), its redirect to Kipu's callback, and back.
            wait_for(
                driver,
                lambda d: "Connected:" in d.page_source or 'role="alert"' in d.page_source,
                f"{platform} to come back",
            )
            assert "Connected:" in driver.page_source, (driver.current_url, driver.page_source[-1500:])
            assert "/kipu/ui/connections" in driver.current_url
            rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr")]
            assert any(r.startswith(platform) and "healthy" in r for r in rows), rows
        assert driver.find_elements(By.XPATH, "//button[text()='Reconnect']")
        # Mastodon is federated: the admin names the instance; Kipu registers itself there, then the same round trip.
        driver.find_element(By.ID, "mastodon-instance").send_keys(ui_server.tokens["mastodon"]["url"])
        button = driver.find_element(By.XPATH, "//button[text()='Connect mastodon']")
        button.click()
        wait_for(driver, lambda d, b=button: _gone(b), "the page to leave for the instance")
        wait_for(driver, lambda d: "Connected:" in d.page_source or 'role="alert"' in d.page_source, "mastodon")
        assert "Connected: mastodon" in driver.page_source, driver.page_source[-1500:]
        shot(driver, "connections")
    finally:
        driver.quit()


def test_the_editor_checks_as_you_type_and_saves_only_a_valid_file(ui_server: Server) -> None:
    from kipu.store.engine import session_scope
    from kipu.store.models import Workflow
    from selenium.webdriver.common.by import By
    from sqlalchemy import select

    with session_scope() as s:
        wf_id = s.scalar(select(Workflow.id).where(Workflow.slug == "demo_crosspost"))
    driver = browser()
    try:
        sign_in(driver, ui_server, "admin", f"/kipu/ui/workflows/{wf_id}/edit?team=demo")
        wait_for(driver, lambda d: d.find_element(By.ID, "state").text == "Valid.", "the stored file to check valid")
        box = driver.find_element(By.ID, "yaml")
        text = box.get_attribute("value")
        assert "publish_outbox" in text
        broken = text.replace("connection_id: outbox:demo", "connection_id: outbox:nobody")
        driver.execute_script("arguments[0].value = arguments[1]", box, broken)
        box.send_keys(" ")  # typing fires the check
        wait_for(driver, lambda d: "problem(s)" in d.find_element(By.ID, "state").text, "the problem to show")
        problems = driver.find_element(By.ID, "problems").text
        assert "publish_outbox" in problems and "outbox:nobody" in problems, problems
        assert box.get_attribute("aria-invalid") == "true"
        shot(driver, "editor")
        driver.find_element(By.XPATH, "//button[text()='Save']").click()  # the server refuses it too
        wait_for(driver, lambda d: "Edit the workflow" in d.page_source, "the refusal")
        assert "outbox:nobody" in driver.find_element(By.ID, "problems").text
        box = driver.find_element(By.ID, "yaml")
        driver.execute_script("arguments[0].value = arguments[1]", box, text.replace("Demo cross-post", "Demo edited"))
        box.send_keys(" ")
        wait_for(driver, lambda d: d.find_element(By.ID, "state").text == "Valid.", "the fix to check valid")
        driver.find_element(By.XPATH, "//button[text()='Save']").click()
        wait_for(driver, lambda d: "Workflow 'Demo edited' saved." in d.page_source, "the save")
    finally:
        driver.quit()
    with session_scope() as s:
        assert s.get(Workflow, wf_id).name == "Demo edited"


def _png(path: Path) -> Path:
    """A real 8x8 PNG (the upload sniffs its bytes; the preview decodes it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xd0\x60\x20" * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def test_media_folders_upload_with_progress_and_previews(ui_server: Server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        sign_in(driver, ui_server, "admin", "/kipu/ui/media?team=demo")
        driver.find_element(By.ID, "folder-name").send_keys("Launch")
        driver.find_element(By.XPATH, "//button[text()='Create folder']").click()
        wait_for(driver, lambda d: "Folder 'Launch' created." in d.page_source, "the folder")
        driver.find_element(By.LINK_TEXT, "Launch").click()
        wait_for(driver, lambda d: d.find_elements(By.ID, "file"), "the folder's page")
        driver.find_element(By.ID, "file").send_keys(str(_png(tmp_path / "sunrise.png")))
        driver.find_element(By.XPATH, "//button[text()='Upload']").click()
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "img[alt='sunrise.png']"), "the uploaded file")
        img = driver.find_element(By.CSS_SELECTOR, "img[alt='sunrise.png']")
        wait_for(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", img) == 8, "the preview")
        assert "kipu-media:" in driver.page_source
        shot(driver, "media")
        (tmp_path / "notes.txt").write_text("not a picture")
        driver.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.txt"))
        driver.find_element(By.XPATH, "//button[text()='Upload']").click()
        wait_for(driver, lambda d: "Refused:" in d.find_element(By.ID, "upload-state").text, "the refusal")
        assert driver.execute_script("return document.getElementById('progress').value") > 0
    finally:
        driver.quit()
