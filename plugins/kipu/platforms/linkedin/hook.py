"""LinkedIn: the Posts API (``/rest/posts``) with a configurable ``LinkedIn-Version``, image upload through
``initializeUpload`` → PUT → ``urn:li:image``, the 3,000-character commentary limit, and the author's posts for
polling. A retired version (HTTP 426 ``NONEXISTENT_VERSION``) is a clear error that says what to change."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from kipu.hooks.base import PlatformError, PublishRequest, PublishResult, Rejected, Transient
from kipu.hooks.client import Call, Flow
from kipu.hooks.media import read_media
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.specs.items import ContentItem

DEFAULT_VERSION = "202511"  # YYYYMM; LinkedIn retires versions after about a year, so it is configurable
MAX_IMAGE = 36 * 1024 * 1024


class LinkedInHook(OAuthPlatformHook):
    platform: ClassVar[str] = "linkedin"
    base_url: ClassVar[str] = "https://api.linkedin.com"
    me_path: ClassVar[str] = "/v2/userinfo"

    @property
    def version(self) -> str:
        return str(self.credentials.metadata.get("linkedin_version") or DEFAULT_VERSION)

    @property
    def author(self) -> str:
        return f"urn:li:person:{self.credentials.platform_user_id}"

    def auth_headers(self) -> dict[str, str]:
        return {**self.credentials.bearer(), "LinkedIn-Version": self.version, "X-Restli-Protocol-Version": "2.0.0"}

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        if response.status_code == 426:
            return Rejected(
                f"linkedin: LinkedIn-Version {self.version} is retired (HTTP 426 NONEXISTENT_VERSION); set "
                "metadata.linkedin_version on the connection to a current YYYYMM"
            )
        return super().map_error(response)

    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        return data["sub"], data.get("name")

    def upload_image(self, url: str) -> str:
        init = self.call(
            "POST",
            "/rest/images?action=initializeUpload",
            json={"initializeUploadRequest": {"owner": self.author}},
        ).json()["value"]
        data = read_media(url, MAX_IMAGE, "linkedin")
        self.call("PUT", init["uploadUrl"], content=data, headers={"Content-Type": "application/octet-stream"})
        return str(init["image"])

    def _result(self, urn: str) -> PublishResult:
        return PublishResult(platform_post_id=urn, url=f"https://www.linkedin.com/feed/update/{quote(urn, safe='')}")

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        since = request.created_at.timestamp() * 1000 if request.created_at else 0
        for post in self._posts(20):
            if post.get("commentary") == _escape(request.caption) and post.get("createdAt", 0) >= since - 60_000:
                return self._result(post["id"])
        return None

    def publish(self, request: PublishRequest) -> PublishResult:
        body: dict[str, Any] = {
            "author": self.author,
            "commentary": _escape(request.caption),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        images = [m for m in request.media if m.kind == "image"]
        if images:
            body["content"] = {
                "media": {"id": self.upload_image(images[0].url), "altText": (images[0].alt_text or "")[:4086]}
            }
        elif request.link:
            body["content"] = {"article": {"source": request.link, "title": (request.title or request.link)[:400]}}
        try:
            resp = self.call("POST", "/rest/posts", json=body)
        except Transient:
            found = self.find_published(request)
            if found is not None:
                return found
            raise
        urn = resp.headers.get("x-restli-id") or resp.headers.get("x-linkedin-id")
        if not urn:
            raise Transient("linkedin: the post was accepted without an id; it will be looked up on retry")
        return self._result(urn)

    def _posts_call(self, count: int) -> Call:
        """The author's newest posts: for finding a post again and for polling."""
        return Call("GET", "/rest/posts", kwargs={"params": {"author": self.author, "q": "author", "count": count}})

    def _posts(self, count: int) -> list[dict[str, Any]]:
        return list(self.send(self._posts_call(count)).json().get("elements") or [])

    def _items(self, posts: list[dict[str, Any]]) -> list[ContentItem]:
        return [
            ContentItem(
                platform="linkedin",
                platform_post_id=p["id"],
                caption=p.get("commentary", ""),
                url=self._result(p["id"]).url,
                published_at=datetime.fromtimestamp(p["createdAt"] / 1000, UTC) if p.get("createdAt") else None,
            )
            for p in reversed(posts)
        ]

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        resp = yield self._posts_call(min(limit, 100))
        return self._items(resp.json().get("elements") or [])


# "little text" format: these characters are markup in commentary and must be escaped to appear as typed.
_RESERVED = re.compile(r"([\\|{}@\[\]()<>#*_~])")


def _escape(text: str) -> str:
    """Escape LinkedIn's reserved characters but keep hashtags, which LinkedIn links on its own."""
    out = _RESERVED.sub(r"\\\1", text)
    return re.sub(r"\\#(?=\w)", "#", out)
