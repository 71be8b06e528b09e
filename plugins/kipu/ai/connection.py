"""The ``kipu_openai`` Airflow connection: API key, ``base_url`` (any OpenAI-compatible server), model, prices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

CONN_ID = "kipu_openai"
# USD per 1,000 tokens (in, out); an estimate, overridable per connection with price_in_per_1k/price_out_per_1k.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4.1-mini": (0.0004, 0.0016),
}


@dataclass(frozen=True)
class AIConnection:
    api_key: SecretStr
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    organization: str | None = None
    timeout: float = 20.0  # one request
    time_budget: float = 60.0  # all attempts of one step, retries included
    daily_token_budget: int | None = None  # per team, unless the team sets its own
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0

    def __repr__(self) -> str:  # the key never prints
        return f"AIConnection(model={self.model!r}, base_url={self.base_url!r})"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return round(tokens_in / 1000 * self.price_in_per_1k + tokens_out / 1000 * self.price_out_per_1k, 8)


def from_fields(password: str | None, host: str | None, extra: dict[str, Any]) -> AIConnection | None:
    if not password:
        return None
    model = str(extra.get("model") or "gpt-4o-mini")
    price_in, price_out = PRICES.get(model, (0.0, 0.0))
    budget = extra.get("daily_token_budget")
    return AIConnection(
        api_key=SecretStr(password),
        model=model,
        base_url=host or extra.get("base_url") or None,
        organization=extra.get("organization") or None,
        timeout=float(extra.get("timeout", 20.0)),
        time_budget=float(extra.get("time_budget", 60.0)),
        daily_token_budget=int(budget) if budget not in (None, "") else None,
        price_in_per_1k=float(extra.get("price_in_per_1k", price_in)),
        price_out_per_1k=float(extra.get("price_out_per_1k", price_out)),
    )


def load(conn_id: str = CONN_ID) -> AIConnection | None:
    """The configured AI connection, or None (then the offline rewriter is used)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # not defined: AI is optional
        return None
    return from_fields(conn.password, conn.host, conn.extra_dejson or {})
