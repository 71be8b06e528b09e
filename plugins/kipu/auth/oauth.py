"""OAuth 2.0 connect and refresh, shared by every platform: authorization URL with ``state`` (and PKCE where
the platform wants it), single-use code exchange, encrypted storage, and refresh-token grants.

App credentials live in the Airflow connection ``kipu_<platform>_app`` (login = client id, password = client
secret, extra = redirect_uri, scopes, authorize_url, token_url, api_base_url) or in ``KIPU_<PLATFORM>_CLIENT_ID`` /
``KIPU_<PLATFORM>_CLIENT_SECRET`` / ``KIPU_<PLATFORM>_REDIRECT_URI``. ``api_base_url`` replaces the platform API's
host for the calls made while connecting (Meta's long-lived token exchanges, "who is this", the Pages list) and is
then stored on each new connection as ``metadata.base_url``.

What a code exchange connects is the hook's business (``OAuthPlatformHook.connect``): one account by default,
Meta's long-lived token instead of the short-lived one, one account per Facebook Page.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr
from sqlalchemy.orm import Session

from kipu import egress, platforms
from kipu.auth.apps import OAuthApp
from kipu.hooks.base import NeedsReconnect, Rejected, Transient
from kipu.hooks.client import SECRET_PARAMS, classify, scrub
from kipu.hooks.platform import TokenSet
from kipu.store.accounts import upsert_connection
from kipu.store.crypto import get_cipher
from kipu.store.models import Connection, OAuthState, Team

STATE_TTL = timedelta(minutes=15)


class RedactSecretParams(logging.Filter):
    """Masks ``SECRET_PARAMS`` in the URLs httpx logs (``HTTP Request: GET <url> ...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def redact_url(url: httpx.URL) -> str:
    if not any(key in SECRET_PARAMS for key in url.params):
        return str(url)
    query = "&".join(f"{k}={'***' if k in SECRET_PARAMS else v}" for k, v in url.params.multi_items())
    return str(url.copy_with(query=None)) + "?" + query


if not any(isinstance(f, RedactSecretParams) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(RedactSecretParams())


# Each platform's documented OAuth app, as its package declares it (``kipu.platforms``).
DEFAULT_APPS: Mapping[str, OAuthApp] = platforms.View("oauth")


def app_for(platform: str, instance: str | None = None, session: Session | None = None) -> OAuthApp:
    """The platform's OAuth app (its package declares the documented endpoints and scopes) with this deployment's
    credentials; a clear error naming where to configure them when they are missing. A federated platform's app is
    the one of ``instance``: registered there the first time, then kept (``instance_clients``)."""
    base = DEFAULT_APPS.get(platform)
    if base is None:
        raise Rejected(f"{platform} does not connect through an OAuth 2.0 app of this deployment")
    if base.per_instance:
        return _instance_app(base, instance, session)
    return _configured(base)


def _configured(base: OAuthApp) -> OAuthApp:
    platform = base.platform
    fields: dict[str, Any] = {}
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(f"kipu_{platform}_app")
        extra = conn.extra_dejson or {}
        fields = {
            "client_id": conn.login or "",
            "client_secret": SecretStr(conn.password) if conn.password else None,
            **{k: extra[k] for k in ("redirect_uri", "authorize_url", "token_url", "api_base_url") if extra.get(k)},
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


def normalise_instance(platform: str, instance: str | None) -> str:
    """``https://host`` of an instance a user named (``mastodon.social`` or a URL), through the egress guard."""
    if not instance or not instance.strip():
        raise Rejected(f"{platform} accounts live on an instance: give the instance (e.g. mastodon.social)")
    raw = instance.strip()
    url = egress.check_url(raw if "://" in raw else f"https://{raw}")
    if url.scheme != "https" and not egress.allow_private():
        raise Rejected(f"{platform}: the instance must be an https URL, got {egress.shown_url(raw)}")
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _instance_app(base: OAuthApp, instance: str | None, session: Session | None) -> OAuthApp:
    """``base`` on ``instance``: its paths made URLs there, with the client Kipu registered there (once)."""
    from kipu import platforms
    from kipu.store.models import InstanceClient

    if session is None:
        raise Rejected(f"{base.platform}: an instance's app needs the store")
    host = normalise_instance(base.platform, instance)
    redirect = _configured_redirect(base.platform)
    app = replace(
        base,
        authorize_url=host + base.authorize_url,
        token_url=host + base.token_url,
        api_base_url=host,
        redirect_uri=redirect,
    )
    known = session.get(InstanceClient, (base.platform, host))
    if known is None or known.redirect_uri != redirect or known.scopes != " ".join(base.scopes):
        register = platforms.load(platforms.get(base.platform).register_client or "")
        client_id, secret = register(host, app)
        if known is None:
            known = InstanceClient(platform=base.platform, instance=host)
            session.add(known)
        known.client_id, known.redirect_uri, known.scopes = client_id, redirect, " ".join(base.scopes)
        known.client_secret = get_cipher().encrypt(secret) if secret else None
        session.flush()
    return replace(app, client_id=known.client_id, client_secret=get_cipher().decrypt(known.client_secret))


def _configured_redirect(platform: str) -> str:
    """Where the platform sends the user back: ``KIPU_<PLATFORM>_REDIRECT_URI``, else
    ``KIPU_PUBLIC_URL/kipu/api/auth/callback/<platform>``."""
    redirect = os.environ.get(f"KIPU_{platform.upper()}_REDIRECT_URI")
    public = os.environ.get("KIPU_PUBLIC_URL", "").rstrip("/")
    if not redirect and public:
        redirect = f"{public}/kipu/api/auth/callback/{platform}"
    if not redirect:
        raise Rejected(
            f"no OAuth callback for {platform}: set KIPU_PUBLIC_URL (this deployment's public URL) or "
            f"KIPU_{platform.upper()}_REDIRECT_URI"
        )
    return redirect


@dataclass(frozen=True)
class ConnectedAccount:
    """One account an authorization connects: a hook's ``connect`` answers one or more (one per Facebook Page)."""

    platform_user_id: str
    username: str | None
    tokens: TokenSet
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ConnectedAccount({self.platform_user_id!r}, {self.username!r})"


def response_message(resp: httpx.Response, *secrets: SecretStr | str | None) -> str:
    """The platform's own explanation of a refusal (Graph ``error.message``, OAuth ``error_description`` with its
    ``error`` code, Instagram's ``error_message``, ...), short and with any secret masked; ``""`` when there is none."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            text = str(err.get("error_user_msg") or err.get("message") or err.get("type") or "")
        for key in ("error_description", "error_message", "message"):
            if not text and body.get(key):
                text = str(body[key])
        if isinstance(err, str) and err:  # an OAuth error code (RFC 6749 5.2): "Bad Request" alone says little
            text = f"{text} ({err})" if text and err not in text else text or err
    elif resp.content and not resp.headers.get("content-type", "").startswith("text/html"):
        text = resp.text
    # Masked before it is cut: a secret across the cut would no longer match, and its first part would stay.
    return scrub(" ".join(text.split()), *secrets)[:200]


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def pkce_pair(encoding: Literal["base64url", "hex"] = "base64url") -> tuple[str, str]:
    """``(verifier, S256 challenge)``: the challenge is the verifier's SHA-256, base64url-encoded as in RFC 7636, or
    hex-encoded where the platform documents that (``OAuthApp.pkce_encoding``, TikTok)."""
    verifier = secrets.token_urlsafe(64)[:128]
    digest = hashlib.sha256(verifier.encode())
    if encoding == "hex":
        return verifier, digest.hexdigest()
    return verifier, base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def begin(
    session: Session,
    app: OAuthApp,
    team: Team,
    profile_id: uuid.UUID | None = None,
    *,
    session_user: str | None = None,
    return_to: str | None = None,
) -> str:
    """The authorization URL to send the user to; its ``state`` is stored (hashed), single use, 15 minutes. Started
    from a signed-in page, only that person's session may complete it (``session_user``)."""
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
        verifier, challenge = pkce_pair(app.pkce_encoding)
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
            instance=app.api_base_url if app.per_instance else None,
            expires_at=now + STATE_TTL,
            session_user=session_user,
            return_to=return_to,
        )
    )
    session.flush()
    return f"{app.authorize_url}?{urlencode(params)}"


def binding(session: Session, state: str) -> tuple[bool, str | None, str | None]:
    """``(pending, session_user, return_to)`` of an authorization: whether it is pending, the Airflow user whose
    session must complete it (None: started by ``kipu connect start``) and the page to return to."""
    pending = session.get(OAuthState, _hash(state))
    return (True, pending.session_user, pending.return_to) if pending is not None else (False, None, None)


def _token_request(app: OAuthApp, data: dict[str, str], client: httpx.Client | None) -> TokenSet:
    data = {**data, app.client_id_param: app.client_id}
    auth = None
    if app.client_secret is not None:
        if app.client_auth == "basic":
            auth = httpx.BasicAuth(app.client_id, app.client_secret.get_secret_value())
        else:
            data["client_secret"] = app.client_secret.get_secret_value()
    try:
        resp = (client or egress.client(timeout=20, deadline=egress.SMALL_ANSWER_SECONDS)).post(
            app.token_url, data=data, auth=auth
        )
    except httpx.HTTPError as exc:
        raise Transient(f"{app.platform}: token endpoint unreachable: {type(exc).__name__}") from None
    if resp.status_code in (400, 401) and data.get("grant_type") == "refresh_token":
        raise NeedsReconnect(f"{app.platform}: the refresh token was refused; reconnect the account")
    error = classify(resp, app.platform)
    if error is not None:
        why = response_message(
            resp, app.client_secret, *(data.get(k) for k in ("code", "code_verifier", "refresh_token"))
        )
        raise type(error)(
            f"{app.platform}: token request failed (HTTP {resp.status_code})" + (f": {why}" if why else "")
        )
    try:
        body = resp.json()
    except ValueError:
        raise Transient(f"{app.platform}: the token endpoint answered something that is not JSON") from None
    if isinstance(body, dict) and "access_token" not in body and isinstance(body.get("data"), list) and body["data"]:
        body = body["data"][0]  # Instagram Login: {"data": [{"access_token", "user_id", "permissions"}]}
    if isinstance(body, dict) and not body.get("access_token") and isinstance(body.get("error"), str):
        # A refusal in a 2xx answer (TikTok's token endpoint can answer {"error", "error_description", "log_id"}
        # with HTTP 200): the same refusal as a 4xx one.
        if data.get("grant_type") == "refresh_token":
            raise NeedsReconnect(f"{app.platform}: the refresh token was refused; reconnect the account")
        why = response_message(
            resp, app.client_secret, *(data.get(k) for k in ("code", "code_verifier", "refresh_token"))
        )
        raise Rejected(f"{app.platform}: token request failed (HTTP {resp.status_code}): {why}")
    if not isinstance(body, dict) or not body.get("access_token"):
        raise Rejected(f"{app.platform}: the token endpoint answered without an access token")
    expires = body.get("expires_in")
    scope = body.get("scope") or body.get("permissions")  # Instagram names the granted scopes "permissions"
    if isinstance(scope, str):
        scopes: list[str] | None = scope.replace(",", " ").split()
    else:
        scopes = [str(s) for s in scope] if isinstance(scope, list) else None
    return TokenSet(
        access_token=SecretStr(body["access_token"]),
        refresh_token=SecretStr(body["refresh_token"]) if body.get("refresh_token") else None,
        expires_at=datetime.now(UTC) + timedelta(seconds=int(expires)) if expires else None,
        scopes=scopes,
        platform_user_id=str(body["user_id"]) if body.get("user_id") else None,
    )


def complete(
    session: Session,
    app: OAuthApp,
    state: str,
    code: str,
    connect: Callable[[TokenSet], list[ConnectedAccount]],
    client: httpx.Client | None = None,
) -> list[Connection]:
    """The callback: check ``state`` (and PKCE), exchange the code, and store every account ``connect`` answers
    for the new tokens (``OAuthPlatformHook.connect``), encrypted; all of them or none.

    The state is consumed and committed before the exchange, so it stays used even when the exchange fails.
    """
    pending = session.get(OAuthState, _hash(state), with_for_update=True)
    if pending is None or pending.platform != app.platform:
        raise Rejected(f"{app.platform}: unknown or already used OAuth state; start connecting again")
    session.delete(pending)  # single use, whatever happens next
    session.commit()
    if pending.expires_at < datetime.now(UTC):
        raise Rejected(f"{app.platform}: the authorization took longer than {STATE_TTL}; start connecting again")
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri}
    if pending.code_verifier:
        verifier = get_cipher().decrypt(pending.code_verifier)
        assert verifier is not None
        data["code_verifier"] = verifier.get_secret_value()
    tokens = _token_request(app, data, client)
    accounts = connect(tokens)
    if not accounts:
        raise Rejected(f"{app.platform}: the authorization connected no account")
    team = session.get(Team, pending.team_id)
    assert team is not None
    return [
        upsert_connection(
            session,
            team,
            app.platform,
            account.platform_user_id,
            username=account.username,
            access_token=account.tokens.access_token,
            refresh_token=account.tokens.refresh_token,  # an empty one never replaces a stored one
            expires_at=account.tokens.expires_at,
            scopes=account.tokens.scopes,
            metadata=account.metadata or None,
        )
        for account in accounts
    ]


def finish(session: Session, platform: str, state: str, code: str, api_base: str | None = None) -> list[Connection]:
    """``complete`` for a platform's hook (the API callback and ``kipu connect finish``): the hook's ``connect``
    decides what the new tokens connect, against ``api_base``, else the app's ``api_base_url``, else its own host."""
    from kipu.hooks.oauth_platform import OAuthPlatformHook
    from kipu.platforms import hook_class

    pending = session.get(OAuthState, _hash(state))
    if pending is None or pending.platform != platform:
        raise Rejected(f"{platform}: unknown or already used OAuth state; start connecting again")
    app = app_for(platform, pending.instance, session)
    cls = hook_class(platform)
    if not issubclass(cls, OAuthPlatformHook):
        raise Rejected(f"{platform} does not connect through OAuth 2.0")
    base = api_base or app.api_base_url or cls.base_url
    return complete(session, app, state, code, lambda tokens: cls.connect(base, app, tokens))


def refresh(app: OAuthApp, refresh_token: SecretStr | None, client: httpx.Client | None = None) -> TokenSet:
    """A refresh-token grant; ``NeedsReconnect`` without a refresh token or when it is refused."""
    if refresh_token is None:
        raise NeedsReconnect(f"{app.platform}: no refresh token is stored; reconnect the account")
    return _token_request(
        app, {"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()}, client
    )
