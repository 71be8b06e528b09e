"""Platforms connected with OAuth 2.0 (X, LinkedIn, Pinterest): refresh grants, the "who is this token" call, and
error bodies whose message is kept for the user."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import httpx

from kipu import egress
from kipu.auth import oauth
from kipu.hooks.base import PlatformError, RateLimited
from kipu.hooks.client import classify
from kipu.hooks.platform import Credentials, PlatformHook, TokenSet


class OAuthPlatformHook(PlatformHook):
    me_path: ClassVar[str]  # the endpoint that names a token's user
    message_keys: ClassVar[tuple[str, ...]] = ("message",)  # where the platform explains a refusal

    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        """``(platform user id, display name)`` from the ``me_path`` answer."""
        raise NotImplementedError

    @classmethod
    def identify(cls, base_url: str, tokens: TokenSet) -> tuple[str, str | None]:
        """The user behind a new token, for the OAuth callback."""
        with egress.client(timeout=20, deadline=egress.SMALL_ANSWER_SECONDS) as client:
            resp = client.get(
                f"{base_url.rstrip('/')}{cls.me_path}",
                headers={"Authorization": f"Bearer {tokens.access_token.get_secret_value()}"},
            )
        error = classify(resp, cls.platform)
        if error:
            raise error
        return cls.identity(resp.json())

    @classmethod
    def connect(cls, base_url: str, app: oauth.OAuthApp, tokens: TokenSet) -> list[oauth.ConnectedAccount]:
        """What a new authorization connects, for ``oauth.complete`` to store: by default the one user behind the
        token. Meta's hooks trade the short-lived token for a long-lived one first; Facebook answers one account per
        Page. ``base_url`` is the API host to ask (a non-default one is kept as ``metadata.base_url``)."""
        user_id, username = cls.identify(base_url, tokens)
        return [oauth.ConnectedAccount(user_id, username, tokens, cls.host_metadata(base_url))]

    @classmethod
    def host_metadata(cls, base_url: str) -> dict[str, Any]:
        """``{"base_url": ...}`` when the connection talks to another host than the hook's default."""
        base = base_url.rstrip("/")
        return {"base_url": base} if base and base != cls.base_url.rstrip("/") else {}

    def oauth_app(self) -> oauth.OAuthApp:
        app = oauth.app_for(self.platform)
        token_url = self.credentials.metadata.get("token_url")
        return replace(app, token_url=token_url) if token_url else app

    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        return oauth.refresh(self.oauth_app(), credentials.refresh_token, self.client)

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        """The status mapped onto the taxonomy; a client error keeps the platform's own words."""
        error = classify(response, self.platform)
        code = response.status_code
        if error is None or isinstance(error, RateLimited) or code == 401 or code >= 500:
            return error
        try:
            body = response.json()
        except ValueError:
            return error
        message = next((body[k] for k in self.message_keys if isinstance(body, dict) and body.get(k)), None)
        return type(error)(f"{self.platform}: HTTP {code}: {message}") if message else error
