"""A local OpenAI-compatible server for the real ``openai`` SDK: ``POST /v1/chat/completions``.

By default it answers a structured caption derived from the ``<source>`` block of the prompt. ``script`` queues
answers for the next calls: ``structured``/``plain`` (with ``caption``/``hashtags``), ``overlong``, ``refusal``,
``empty``, ``invalid_json``, ``off_schema``, ``429`` (with ``Retry-After``) and ``500``. ``structured_supported=False`` makes it reject
``response_format`` like servers without structured output; ``latency`` delays every answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.serve import ThreadedServer

SOURCE = re.compile(r"<source>\n?(.*?)\n?</source>", re.DOTALL)


@dataclass
class Answer:
    kind: str = "structured"
    caption: str | None = None
    hashtags: list[str] = field(default_factory=list)
    retry_after: str = "1"


class OpenAIServer:
    def __init__(self, latency: float = 0.0, structured_supported: bool = True) -> None:
        self.latency = latency
        self.structured_supported = structured_supported
        self.script: list[Answer] = []
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self._served = ThreadedServer(self.app)
        self.port = self._served.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *answers: Answer) -> OpenAIServer:
        self.script.extend(answers)
        return self

    async def app(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["path"] != "/v1/chat/completions":
            await self._json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        request = json.loads(body)
        self.requests.append(request)
        self.auth_headers.append(headers.get("authorization", ""))
        if self.latency:
            await asyncio.sleep(self.latency)
        structured = (request.get("response_format") or {}).get("type") == "json_schema"
        if structured and not self.structured_supported:
            await self._json(
                send,
                400,
                {"error": {"message": "response_format json_schema is not supported", "type": "invalid_request_error"}},
            )
            return
        answer = self.script.pop(0) if self.script else Answer()
        if answer.kind == "429":
            await self._json(
                send,
                429,
                {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
                [(b"retry-after", answer.retry_after.encode())],
            )
            return
        if answer.kind == "500":
            await self._json(send, 500, {"error": {"message": "The server had an error", "type": "server_error"}})
            return
        source = SOURCE.search(request["messages"][-1]["content"])
        text = source.group(1) if source else ""
        caption = answer.caption if answer.caption is not None else f"Fresh take: {text}".strip()
        if answer.kind == "overlong":
            caption = (caption + " ") * 40
        refusal = None
        if answer.kind == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        elif answer.kind == "empty":
            content = ""
        elif answer.kind == "invalid_json":
            content = '{"caption": "cut off'
        elif answer.kind == "off_schema":  # valid JSON the schema does not allow: a caption that is not a string
            content = json.dumps({"caption": 123, "hashtags": ["a", 1]})
        elif structured:  # exactly the properties of the schema asked for, as OpenAI's strict structured output
            wanted = ((request.get("response_format") or {}).get("json_schema") or {}).get("name")
            full = {"caption": caption, "hashtags": answer.hashtags}
            content = json.dumps({"hashtags": answer.hashtags} if wanted == "hashtags" else full)
        else:
            content = caption + ("\n\n" + " ".join(f"#{t}" for t in answer.hashtags) if answer.hashtags else "")
        prompt_tokens = sum(len(m["content"] or "") for m in request["messages"]) // 4
        completion_tokens = len(content or refusal or "") // 4 + 1
        await self._json(
            send,
            200,
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    @staticmethod
    async def _json(send: Any, status: int, payload: dict, headers: list | None = None) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def __enter__(self) -> OpenAIServer:
        self._served.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.stop()
