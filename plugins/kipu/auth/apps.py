"""An OAuth 2.0 app as a platform documents it: endpoints, scopes, PKCE and how the client authenticates. Each
platform package declares its own (``Platform.oauth``); ``kipu.auth.oauth.app_for`` adds the credentials, from this
deployment's configuration or, for a federated platform, from the client registered at the instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr


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
    # How the S256 code challenge is written: "base64url" as RFC 7636 says (X, Google), or "hex" for TikTok, whose
    # Login Kit documents the challenge as the hex-encoded SHA-256 of the verifier (docs/platforms/tiktok.md).
    pkce_encoding: Literal["base64url", "hex"] = "base64url"
    scope_separator: str = " "
    client_auth: str = "basic"  # basic | body
    client_id_param: str = "client_id"  # TikTok calls it client_key
    # Extra authorize-URL parameters (Google needs access_type=offline to hand out a refresh token).
    authorize_params: tuple[tuple[str, str], ...] = ()
    api_base_url: str = ""  # the platform API's host while connecting, when not the hook's own (fakes, proxies)
    # A federated platform (Mastodon): every instance is its own server with its own apps. The endpoints are paths
    # on the instance, and Kipu registers a client there the first time someone connects an account of it.
    per_instance: bool = False

    def __repr__(self) -> str:
        return f"OAuthApp({self.platform!r}, client_id={self.client_id!r})"
