"""A Mastodon instance as Kipu meets it: the OAuth client registered there (``POST /api/v1/apps``) and its limits
(``/api/v2/instance``). Every call goes through the egress guard, and no word of the instance's answer is repeated:
the instance is a URL a user typed, so it may be anyone's server."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kipu import egress
from kipu.auth.apps import OAuthApp
from kipu.hooks.errors import Rejected, Transient

# The largest answer read from an instance: its description of itself is a few kilobytes.
MAX_ANSWER = 256 * 1024


class InstanceLimits(BaseModel):
    """The limits an instance publishes; Mastodon's defaults where it says nothing."""

    model_config = ConfigDict(extra="ignore")

    max_characters: int = Field(default=500, ge=1, le=1_000_000)
    characters_reserved_per_url: int = Field(default=23, ge=0, le=10_000)
    max_media_attachments: int = Field(default=4, ge=0, le=100)
    image_size_limit: int = Field(default=16 * 1024 * 1024, ge=0)
    video_size_limit: int = Field(default=99 * 1024 * 1024, ge=0)
    description_limit: int = Field(default=1500, ge=1)  # alt text


def read_json(response: httpx.Response, what: str) -> Any:
    """The body of a streamed answer, at most ``MAX_ANSWER`` bytes, as JSON; ``Rejected`` naming ``what`` otherwise."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER:
            raise Rejected(f"mastodon: {what} answered more than {MAX_ANSWER} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise Rejected(f"mastodon: {what} did not answer JSON") from None


def _post_or_get(method: str, url: str, what: str, **kwargs: Any) -> Any:
    shown = "the instance " + egress.shown_url(url)
    try:
        with (
            egress.client(timeout=20, follow_redirects=False, deadline=egress.SMALL_ANSWER_SECONDS) as client,
            client.stream(method, url, **kwargs) as resp,
        ):
            if resp.status_code == 429 or resp.status_code >= 500:
                raise Transient(f"mastodon: {shown} answered HTTP {resp.status_code} to {what}; try again later")
            if resp.status_code >= 300:
                raise Rejected(f"mastodon: {shown} answered HTTP {resp.status_code} to {what}: not a Mastodon server?")
            return read_json(resp, f"{shown} ({what})")
    except httpx.HTTPError as exc:
        raise Transient(f"mastodon: {shown} cannot be reached ({type(exc).__name__})") from None


def register_client(instance: str, app: OAuthApp) -> tuple[str, str | None]:
    """Register Kipu as an OAuth client at ``instance`` for ``app``'s redirect URI and scopes."""
    registration = {"client_name": "Kipu", "redirect_uris": app.redirect_uri, "scopes": " ".join(app.scopes)}
    if os.environ.get("KIPU_PUBLIC_URL"):
        registration["website"] = os.environ["KIPU_PUBLIC_URL"]
    body = _post_or_get("POST", f"{instance}/api/v1/apps", "an app registration", json=registration)
    client_id = body.get("client_id") if isinstance(body, dict) else None
    if not isinstance(client_id, str) or not client_id or len(client_id) > 512:
        raise Rejected(f"mastodon: the instance {egress.shown_url(instance)} registered no OAuth client: not Mastodon?")
    secret = body.get("client_secret")
    return client_id, secret if isinstance(secret, str) and secret else None


def limits_of(instance: str) -> InstanceLimits:
    """The instance's limits from ``/api/v2/instance`` (Mastodon 4.0+), else ``/api/v1/instance``; the defaults when
    it publishes none: connecting never fails for want of them."""
    for path in ("/api/v2/instance", "/api/v1/instance"):
        try:
            body = _post_or_get("GET", f"{instance}{path}", "an instance description")
        except (Rejected, Transient):
            continue
        return parse_limits(body)
    return InstanceLimits()


def parse_limits(body: Any) -> InstanceLimits:
    config = body.get("configuration") if isinstance(body, dict) else None
    if not isinstance(config, dict):
        return InstanceLimits()
    fields: dict[str, Any] = {}
    for section in ("statuses", "media_attachments"):
        if isinstance(config.get(section), dict):
            fields |= {k: v for k, v in config[section].items() if k in InstanceLimits.model_fields}
    try:
        return InstanceLimits.model_validate(fields)
    except ValidationError:  # an out-of-range number is ignored field by field
        good = {}
        for key, value in fields.items():
            try:
                InstanceLimits.model_validate({key: value})
            except ValidationError:
                continue
            good[key] = value
        return InstanceLimits.model_validate(good)
