"""OAuth 2.0 connect and refresh, shared by every platform: authorization URL with ``state`` (and PKCE where
the platform wants it), single-use code exchange, encrypted storage, and refresh-token grants.

App credentials live in the Airflow connection ``kipu_<platform>_app`` (login = client id, password = client
secret, extra = redirect_uri, scopes, authorize_url, token_url) or in ``KIPU_<PLATFORM>_CLIENT_ID`` /
``KIPU_<PLATFORM>_CLIENT_SECRET`` / ``KIPU_<PLATFORM>_REDIRECT_URI``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr
from sqlalchemy.orm import Session

from kipu.hooks.base import NeedsReconnect, Rejected, Transient
from kipu.hooks.http import classify
from kipu.hooks.platform import TokenSet
from kipu.store.accounts import upsert_connection
from kipu.store.crypto import get_cipher
from kipu.store.models import Connection, OAuthState, Team

STATE_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class OAuthApp:
    platform: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    client_id: str = ""
    client_secret: SecretStr | None = None
    redirect_uri: str = ""
    pkce: bool = False
    scope_separator: str = " "
    client_auth: str = "basic"  # basic | body
    client_id_param: str = "client_id"  # TikTok calls it client_key
    # Extra authorize-URL parameters (Google needs access_type=offline to hand out a refresh token).
    authorize_params: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"OAuthApp({self.platform!r}, client_id={self.client_id!r})"


# The platforms' documented endpoints and the scopes Kipu needs; overridable per connection (and by the fakes).
DEFAULT_APPS: dict[str, OAuthApp] = {
    "x": OAuthApp(
        "x",
        "https://x.com/i/oauth2/authorize",
        "https://api.x.com/2/oauth2/token",
        ("tweet.read", "tweet.write", "users.read", "media.write", "offline.access"),
        pkce=True,
    ),
    "linkedin": OAuthApp(
        "linkedin",
        "https://www.linkedin.com/oauth/v2/authorization",
        "https://www.linkedin.com/oauth/v2/accessToken",
        ("openid", "profile", "w_member_social"),
        client_auth="body",
    ),
    "pinterest": OAuthApp(
        "pinterest",
        "https://www.pinterest.com/oauth/",
        "https://api.pinterest.com/v5/oauth/token",
        ("boards:read", "pins:read", "pins:write", "user_accounts:read"),
        scope_separator=",",
    ),
    "facebook": OAuthApp(
        "facebook",
        "https://www.facebook.com/v21.0/dialog/oauth",
        "https://graph.facebook.com/v21.0/oauth/access_token",
        ("pages_show_list", "pages_read_engagement", "pages_manage_posts"),
        scope_separator=",",
        client_auth="body",
    ),
    "instagram": OAuthApp(
        "instagram",
        "https://www.instagram.com/oauth/authorize",
        "https://api.instagram.com/oauth/access_token",
        ("instagram_business_basic", "instagram_business_content_publish", "instagram_business_manage_comments"),
        scope_separator=",",
        client_auth="body",
    ),
    "threads": OAuthApp(
        "threads",
        "https://threads.net/oauth/authorize",
        "https://graph.threads.net/oauth/access_token",
        ("threads_basic", "threads_content_publish"),
        scope_separator=",",
        client_auth="body",
    ),
    "tiktok": OAuthApp(
        "tiktok",
        "https://www.tiktok.com/v2/auth/authorize/",
        "https://open.tiktokapis.com/v2/oauth/token/",
        ("user.info.basic", "video.list", "video.publish", "video.upload"),
        scope_separator=",",
        client_auth="body",
        client_id_param="client_key",
        pkce=True,
    ),
    "youtube": OAuthApp(
        "youtube",
        "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token",
        ("https://www.googleapis.com/auth/youtube.upload", "https://www.googleapis.com/auth/youtube.readonly"),
        client_auth="body",
        pkce=True,
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    ),
}


def app_for(platform: str) -> OAuthApp:
    """The platform's OAuth app; a clear error naming where to configure it when it is missing."""
    if platform not in DEFAULT_APPS:
        raise Rejected(f"{platform} does not connect through OAuth 2.0")
    base = DEFAULT_APPS[platform]
    fields: dict[str, Any] = {}
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(f"kipu_{platform}_app")
        extra = conn.extra_dejson or {}
        fields = {
            "client_id": conn.login or "",
            "client_secret": SecretStr(conn.password) if conn.password else None,
            **{k: extra[k] for k in ("redirect_uri", "authorize_url", "token_url") if extra.get(k)},
        }
        if extra.get("scopes"):
            fields["scopes"] = tuple(str(extra["scopes"]).replace(",", " ").split())
    except Exception:  # fall back to the environment
        prefix = f"KIPU_{platform.upper()}_"
        secret = os.environ.get(prefix + "CLIENT_SECRET")
        fields = {
            "client_id": os.environ.get(prefix + "CLIENT_ID", ""),
            "client_secret": SecretStr(secret) if secret else None,
            "redirect_uri": os.environ.get(prefix + "REDIRECT_URI", ""),
        }
    app = replace(base, **fields)
    if not app.client_id or not app.redirect_uri:
        raise Rejected(
            f"no OAuth app for {platform}: set the Airflow connection kipu_{platform}_app (client id, secret and "
            f"extra.redirect_uri) or KIPU_{platform.upper()}_CLIENT_ID, _CLIENT_SECRET and _REDIRECT_URI"
        )
    return app


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def pkce_pair() -> tuple[str, str]:
    """``(verifier, S256 challenge)`` as in RFC 7636."""
    verifier = secrets.token_urlsafe(64)[:128]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def begin(session: Session, app: OAuthApp, team: Team, profile_id: uuid.UUID | None = None) -> str:
    """The authorization URL to send the user to; its ``state`` is stored (hashed), single use, 15 minutes."""
    state = secrets.token_urlsafe(32)
    params = {
        "response_type": "code",
        app.client_id_param: app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": app.scope_separator.join(app.scopes),
        "state": state,
        **dict(app.authorize_params),
    }
    verifier = None
    if app.pkce:
        verifier, challenge = pkce_pair()
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    now = datetime.now(UTC)
    session.add(
        OAuthState(
            state_hash=_hash(state),
            team_id=team.id,
            platform=app.platform,
            profile_id=profile_id,
            code_verifier=get_cipher().encrypt(verifier) if verifier else None,
            redirect_uri=app.redirect_uri,
            expires_at=now + STATE_TTL,
        )
    )
    session.flush()
    return f"{app.authorize_url}?{urlencode(params)}"


def _token_request(app: OAuthApp, data: dict[str, str], client: httpx.Client | None) -> TokenSet:
    data = {**data, app.client_id_param: app.client_id}
    auth = None
    if app.client_secret is not None:
        if app.client_auth == "basic":
            auth = httpx.BasicAuth(app.client_id, app.client_secret.get_secret_value())
        else:
            data["client_secret"] = app.client_secret.get_secret_value()
    try:
        resp = (client or httpx.Client(timeout=20)).post(app.token_url, data=data, auth=auth)
    except httpx.HTTPError as exc:
        raise Transient(f"{app.platform}: token endpoint unreachable: {type(exc).__name__}") from None
    if resp.status_code in (400, 401) and data.get("grant_type") == "refresh_token":
        raise NeedsReconnect(f"{app.platform}: the refresh token was refused; reconnect the account")
    error = classify(resp, app.platform)
    if error is not None:
        raise type(error)(f"{app.platform}: token request failed (HTTP {resp.status_code})")
    body = resp.json()
    expires = body.get("expires_in")
    scope = body.get("scope")
    return TokenSet(
        access_token=SecretStr(body["access_token"]),
        refresh_token=SecretStr(body["refresh_token"]) if body.get("refresh_token") else None,
        expires_at=datetime.now(UTC) + timedelta(seconds=int(expires)) if expires else None,
        scopes=scope.replace(",", " ").split() if isinstance(scope, str) else None,
    )


def complete(
    session: Session,
    app: OAuthApp,
    state: str,
    code: str,
    identify: Callable[[TokenSet], tuple[str, str | None]],
    client: httpx.Client | None = None,
) -> Connection:
    """The callback: check ``state`` (and PKCE), exchange the code, and store the connection encrypted.

    ``identify`` returns the platform user id and name for the new access token.
    """
    pending = session.get(OAuthState, _hash(state), with_for_update=True)
    if pending is None or pending.platform != app.platform:
        raise Rejected(f"{app.platform}: unknown or already used OAuth state; start connecting again")
    session.delete(pending)  # single use, whatever happens next
    session.flush()
    if pending.expires_at < datetime.now(UTC):
        raise Rejected(f"{app.platform}: the authorization took longer than {STATE_TTL}; start connecting again")
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri}
    if pending.code_verifier:
        verifier = get_cipher().decrypt(pending.code_verifier)
        assert verifier is not None
        data["code_verifier"] = verifier.get_secret_value()
    tokens = _token_request(app, data, client)
    user_id, username = identify(tokens)
    team = session.get(Team, pending.team_id)
    assert team is not None
    return upsert_connection(
        session,
        team,
        app.platform,
        user_id,
        username=username,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        scopes=tokens.scopes,
    )


def refresh(app: OAuthApp, refresh_token: SecretStr | None, client: httpx.Client | None = None) -> TokenSet:
    """A refresh-token grant; ``NeedsReconnect`` without a refresh token or when it is refused."""
    if refresh_token is None:
        raise NeedsReconnect(f"{app.platform}: no refresh token is stored; reconnect the account")
    return _token_request(
        app, {"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()}, client
    )
