"""Odd values in API bodies, workflow files, uploads, feeds and webhooks: a 4xx or a clear error naming the field,
never a 500. Each case was a 500 or a crash before: a UTF-8-encoded lone surrogate, YAML 1.1's dates, sets, bytes and
base-60 numbers, numbers over Python's 4,300-digit limit, Infinity, a file name over 255 bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kipu.platforms.feed.hook import FeedError, parse_feed

from tests.api_helpers import token_for
from tests.helpers import demo_doc
from tests.test_poll import cycle, host, make_due, runs, team, watch  # noqa: F401  (fixtures)

API = "/api"


@pytest.fixture
def kapp(pg_demo_team: dict) -> Iterator[TestClient]:
    from kipu.api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def hdr(kapp: TestClient) -> dict[str, str]:
    return token_for("owner@demo.test")


def _post_raw(kapp: TestClient, path: str, raw: bytes, hdr: dict[str, str]) -> Any:
    return kapp.post(path, content=raw, headers={**hdr, "Content-Type": "application/json"})


@pytest.mark.parametrize(
    "text",
    [
        "name: x\nteam: demo\nwhen: 2024-02-30\n",  # impossible date: PyYAML raises ValueError
        "name: x\nteam: demo\nwhen: 2024-01-01 25:00:00\n",  # impossible time
        "name: " + "9" * 5000 + "\nteam: demo\n",  # int over Python's 4300-digit str limit
    ],
)
def test_validate_yaml_bad_scalars_are_not_500(kapp: TestClient, hdr: dict, text: str) -> None:
    r = kapp.post(f"{API}/workflows/validate", json={"text": text}, headers=hdr)
    assert r.status_code < 500, r.text


def test_validate_json_huge_int_is_not_500(kapp: TestClient, hdr: dict) -> None:
    text = '{"name": ' + "9" * 5000 + ', "team": "demo"}'
    r = kapp.post(f"{API}/workflows/validate", json={"text": text, "format": "json"}, headers=hdr)
    assert r.status_code < 500, r.text


def test_plan_file_with_bad_date_is_not_500(kapp: TestClient, hdr: dict) -> None:
    r = kapp.post(f"{API}/teams/demo/plan", json={"files": {"a.yaml": "name: x\nwhen: 2024-02-30\n"}}, headers=hdr)
    assert r.status_code < 500, r.text


def test_raw_utf8_surrogate_in_plan_file_is_not_500(kapp: TestClient, hdr: dict) -> None:
    # UTF-8-encoded lone surrogate (CESU bytes): json.loads(bytes) decodes it with surrogatepass; the guard only
    # looks for the \\uD800 escape spelling.
    raw = b'{"files": {"a.yaml": "name: x\xed\xa0\x80\\n"}}'
    r = _post_raw(kapp, f"{API}/teams/demo/plan", raw, hdr)
    assert r.status_code < 500, r.text


def test_raw_utf8_surrogate_in_workflow_name_is_not_500(kapp: TestClient, hdr: dict) -> None:
    doc = demo_doc(name="PLACEHOLDER")
    raw = json.dumps(doc).encode().replace(b"PLACEHOLDER", b"pasta\xed\xa0\x80")
    r = _post_raw(kapp, f"{API}/workflows", raw, hdr)
    assert r.status_code < 500, r.text
    assert r.status_code == 422 and "name" in str(r.json()["detail"]), r.text


SUR = b"\xed\xa0\x80"  # a lone surrogate, UTF-8 encoded (not the \\ud800 escape the guard looks for)


@pytest.mark.parametrize(
    "method,path,raw",
    [
        ("PATCH", "/teams/demo", b'{"name": "Demo' + SUR + b'"}'),
        ("POST", "/teams/demo/invitations", b'{"email": "n@demo.test", "role": "viewer", "x": "N' + SUR + b'"}'),
        ("POST", "/teams/demo/invitations", b'{"email": "n' + SUR + b'@demo.test", "role": "viewer"}'),
        (
            "POST",
            "/teams/demo/notifications/channels",
            b'{"kind": "email", "name": "c' + SUR + b'", "recipients": ["a@b.example"]}',
        ),
        ("POST", "/workflows/validate", b'{"text": "name: x' + SUR + b'"}'),
    ],
)
def test_raw_surrogate_bodies_are_not_500(kapp: TestClient, hdr: dict, method: str, path: str, raw: bytes) -> None:
    r = kapp.request(method, API + path, content=raw, headers={**hdr, "Content-Type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.text, r.text


def _yaml_with_publish_config(extra: str) -> str:
    return (
        "name: Odd\nteam: demo\nslug: odd_one\nstatus: paused\ntrigger:\n  type: manual\nsteps:\n"
        "  - id: pub\n    type: publish\n    connection_id: outbox:demo\n    platform: outbox\n"
        "    config:\n" + extra
    )


ODD = [
    "      platform_options: {when: 2024-01-01}\n",  # a YAML date
    "      platform_options: {s: !!set {a: null}}\n",  # a YAML set
    "      platform_options: {b: !!binary /w==}\n",  # bytes, not UTF-8
    "      platform_options: {f: .nan}\n",
    "      title: !!binary aGk=\n",
    "      tags: [2024-01-01]\n",
]


@pytest.mark.parametrize("extra", ODD)
def test_yaml_typed_scalars_validate_is_not_500(kapp: TestClient, hdr: dict, extra: str) -> None:
    r = kapp.post(f"{API}/workflows/validate", json={"text": _yaml_with_publish_config(extra)}, headers=hdr)
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("extra", ODD)
def test_yaml_typed_scalars_apply_is_not_500(kapp: TestClient, hdr: dict, extra: str) -> None:
    files = {"odd.yaml": _yaml_with_publish_config(extra)}
    r = kapp.post(f"{API}/teams/demo/plan", json={"files": files}, headers=hdr)
    assert r.status_code < 500, r.text
    r = kapp.post(f"{API}/teams/demo/apply", json={"files": files}, headers=hdr)
    assert r.status_code < 500, r.text


BIG = "1" + ":0" * 5000  # a YAML 1.1 base-60 int: about 8,900 digits, over Python's 4,300-digit str limit


@pytest.mark.parametrize("extra", [f"      category_id: {BIG}\n", f"      title: {BIG}\n"])
def test_yaml_sexagesimal_huge_int_is_not_500(kapp: TestClient, hdr: dict, extra: str) -> None:
    text = _yaml_with_publish_config(extra)
    r = kapp.post(f"{API}/workflows/validate", json={"text": text}, headers=hdr)
    assert r.status_code < 500, r.text
    r = kapp.post(f"{API}/teams/demo/apply", json={"files": {"odd.yaml": text}}, headers=hdr)
    assert r.status_code < 500, r.text


def test_yaml_reads_json_types_only() -> None:
    """YAML 1.1's dates and base-60 numbers stay text (a base-60 number cost quadratic time to read), a number is
    bounded in length, and tags that make bytes or sets are refused."""
    from kipu.specs.document import DocumentError, load_document

    assert load_document(b"name: 1:0:0\nwhen: 2024-02-30\nat: 2024-01-01 25:00:00\n", "w.yaml") == {
        "name": "1:0:0",
        "when": "2024-02-30",
        "at": "2024-01-01 25:00:00",
    }
    for raw, message in (
        (b"name: " + b"9" * 5000, "a number of 5000 characters, over the limit of 40"),
        (b"a: !!binary /w==", "could not determine a constructor"),
        (b"a: !!set {x: null}", "could not determine a constructor"),
        (b"a: {b: .nan}", "a.b: nan is not a finite number"),
    ):
        with pytest.raises(DocumentError) as info:
            load_document(raw, "w.yaml")
        assert any(message in e for e in info.value.errors), info.value.errors
    with pytest.raises(DocumentError, match="a: inf is not a finite number"):
        load_document(b'{"a": 1e999}', "w.json")


@pytest.mark.parametrize("filename", ["\u65e5" * 200 + ".png", "\u00e9" * 200 + ".png"])
def test_upload_long_multibyte_filename_is_not_500(kapp: TestClient, hdr: dict, filename: str) -> None:
    from tests.conftest import REPO

    png = (REPO / "include/demo/media/sunrise.png").read_bytes()
    r = kapp.post(
        f"{API}/media/upload", params={"team": "demo"}, files={"file": (filename, png, "image/png")}, headers=hdr
    )
    assert r.status_code < 500, r.text


@pytest.mark.parametrize(
    "item",
    [
        b'{"item": {"caption": "hi", "duration_seconds": Infinity}}',
        b'{"item": {"caption": "hi", "media": [{"url": "https://example.com/a.mp4", "duration_seconds": Infinity}]}}',
    ],
)
def test_manual_run_with_infinity_is_not_500(kapp: TestClient, hdr: dict, item: bytes) -> None:
    doc = demo_doc(slug="inf_run", status="active")
    created = kapp.post(f"{API}/workflows", json=doc, headers=hdr)
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    r = _post_raw(kapp, f"{API}/workflows/{wid}/run", item, hdr)
    assert r.status_code == 422 and "finite number" in r.text, r.text
    r = _post_raw(kapp, f"{API}/workflows/{wid}/preview", item, hdr)
    assert r.status_code < 500, r.text


def test_one_hostile_feed_entry_never_holds_back_the_others(team: dict, host) -> None:  # noqa: F811
    src = host.source("ana")
    wf = watch(host, "ana")
    cycle()  # the first poll starts from now
    src.add("good-1", "a fine post")
    # 1e999 is a valid JSON number that Python reads as inf: the cycle failed to write the feed's items, every time
    src.add("bad-1", "hostile", attachments=[{"url": "https://e.example/v.mp4", "duration_in_seconds": 1e999}])
    make_due(wf)
    report = cycle()
    got = sorted(r.platform_post_id for r in runs(wf))
    assert got == ["bad-1", "good-1"], (report, got)  # the infinite duration is dropped, the item kept


@pytest.mark.parametrize(
    "body",
    [
        # RSS enclosure length "²": str.isdigit() is True, int() raises ValueError
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><guid>1</guid><title>x</title>'
        b'<enclosure url="https://e.example/a.mp3" length="\xc2\xb2" type="audio/mpeg"/></item></channel></rss>',
        # JSON Feed attachment with a non-string url
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "attachments": [{"url": 5}]}]}',
        # JSON Feed title that is not text
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "title": {"a": 1}}]}',
        # JSON Feed "items" that is not a list
        b'{"version": "https://jsonfeed.org/version/1.1", "items": 5}',
        # JSON Feed author that is not a mapping-holding list
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "authors": 5}]}',
    ],
)
def test_malformed_feed_is_a_feed_error_not_a_crash(body: bytes) -> None:
    try:
        parse_feed(body)
    except FeedError:
        return
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__}: {str(exc)[:200]}")


ATOM = (
    '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:yt="http://www.youtube.com/xml/schemas/2015"'
    ' xmlns:media="http://search.yahoo.com/mrss/"><entry><id>yt:video:{vid}</id><yt:videoId>{vid}</yt:videoId>'
    "<yt:channelId>UC1</yt:channelId><title>t</title><published>2099-01-01T00:00:00+00:00</published>"
    '<media:group><media:thumbnail url="https://i.example/t.jpg" width="{w}" height="1"/></media:group></entry></feed>'
)


@pytest.mark.parametrize("vid,w", [("abc", "\u00b2"), ("v" * 600, "1")])
def test_signed_websub_notification_of_odd_shape_is_refused_not_crashed(
    vid: str, w: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import hmac

    from kipu.platforms.youtube.websub import WEBHOOK, websub_secret
    from kipu.webhooks import WebhookRefused

    monkeypatch.setenv("KIPU_YOUTUBE_APP_SECRET", "s3cret")
    body = ATOM.format(vid=vid, w=w).encode()
    sig = "sha1=" + hmac.new(websub_secret().encode(), body, hashlib.sha1).hexdigest()
    try:
        WEBHOOK.receive({"x-hub-signature": sig}, body)
    except WebhookRefused:
        return
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__}: {str(exc)[:200]}")
