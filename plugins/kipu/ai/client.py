"""One chat call to an OpenAI-compatible server through the ``openai`` SDK, retried within a time budget.

Structured output (JSON schema) first; a server that rejects ``response_format`` is asked in plain text from then
on. Errors are reworded here: the SDK's messages are never passed on, so the API key cannot leak through them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kipu.ai.connection import AIConnection
from kipu.captions.rewriter import split_trailing_tags
from kipu.hooks.client import backoff, parse_retry_after

if TYPE_CHECKING:
    import openai


class AIUnavailable(Exception):
    """No usable answer within the time budget; the caller falls back to the offline rewriter. ``tokens_in`` and
    ``tokens_out`` are what the failed attempts were billed: the ledger counts them too."""

    def __init__(self, message: str, tokens_in: int = 0, tokens_out: int = 0) -> None:
        super().__init__(message)
        self.tokens_in, self.tokens_out = tokens_in, tokens_out


@dataclass
class Reply:
    data: dict[str, Any] | None = None  # the parsed answer: {"caption": ..., "hashtags": [...]} or {"hashtags": [...]}
    refusal: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: int = 0
    problems: list[str] = field(default_factory=list)


class ChatClient:
    def __init__(self, conn: AIConnection) -> None:
        self.conn = conn
        self.structured = True
        import openai  # here, not at import: the offline rewriter (no kipu_openai) never pays its ~0.4 s import

        self._client = openai.OpenAI(
            api_key=conn.api_key.get_secret_value(),
            base_url=conn.base_url,
            organization=conn.organization,
            timeout=conn.timeout,
            max_retries=0,  # retries are ours, bounded by the step's time budget
        )

    def ask(self, messages: list[dict[str, str]], schema: dict[str, Any], deadline: float) -> Reply:
        reply = Reply()
        while True:
            reply.attempts += 1
            wait, problem = self._attempt(messages, schema, reply)
            if problem is None:
                return reply
            reply.problems.append(problem)
            if wait is None or time.monotonic() + wait > deadline:
                raise AIUnavailable(f"{problem} (after {reply.attempts} attempt(s))", reply.tokens_in, reply.tokens_out)
            time.sleep(wait)

    def _attempt(
        self, messages: list[dict[str, str]], schema: dict[str, Any], reply: Reply
    ) -> tuple[float | None, str | None]:
        """One request: ``(None, None)`` when ``reply`` is complete, else ``(seconds to wait or None, problem)``."""
        kwargs: dict[str, Any] = {"model": self.conn.model, "messages": messages, "temperature": 0.4}
        if self.structured:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": schema}
        n = reply.attempts
        import openai

        try:
            resp = self._client.chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            if self.structured and "response_format" in _body_text(exc):
                self.structured = False  # this server has no structured output: plain text from now on
                return 0.0, "the server does not support structured output"
            return None, "the model server rejected the request (HTTP 400)"
        except openai.RateLimitError as exc:
            after = parse_retry_after(exc.response.headers.get("retry-after"))
            return (after if after is not None else backoff(n)), "rate limited (HTTP 429)"
        except openai.AuthenticationError:
            return None, "the kipu_openai API key was refused (HTTP 401)"
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                return backoff(n), f"server error (HTTP {exc.status_code})"
            return None, f"the model server answered HTTP {exc.status_code}"
        except (openai.APITimeoutError, openai.APIConnectionError):
            return backoff(n), "no answer from the model server (timeout or connection error)"
        if resp.usage is not None:
            reply.tokens_in += resp.usage.prompt_tokens or 0
            reply.tokens_out += resp.usage.completion_tokens or 0
        message = resp.choices[0].message if resp.choices else None
        if message is None:
            return backoff(n), "an answer with no choices"
        if getattr(message, "refusal", None):
            reply.refusal = message.refusal
            return None, None
        content = (message.content or "").strip()
        if not content:
            reply.data = {}
            return None, None
        if not self.structured:
            caption, tags = split_trailing_tags(content)
            reply.data = {"caption": caption, "hashtags": tags}
            return None, None
        try:
            data = json.loads(content)
        except ValueError:
            return backoff(n), "an answer that is not valid JSON"
        if not isinstance(data, dict):
            return backoff(n), "an answer that is not a JSON object"
        import jsonschema

        try:  # a server may ignore the schema it was given: a caption that is not a string is no caption
            jsonschema.validate(data, schema["schema"])
        except jsonschema.ValidationError:
            return backoff(n), "an answer that does not match the schema"
        reply.data = data
        return None, None


def _body_text(exc: openai.APIStatusError) -> str:
    try:
        return json.dumps(exc.body) if exc.body is not None else ""
    except (TypeError, ValueError):
        return ""
