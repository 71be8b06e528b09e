"""Publishing 1,000 text posts to the X fake through ``XHook``, the fake enforcing 200 requests per 15 minutes
scaled down in time. Prints 429s, duplicates, and throughput against the fake's limit (the physical limit here)."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=200, help="requests per window per token (X: 200)")
    parser.add_argument("--window", type=float, default=6.0, help="seconds per window (X: 900; scaled 150x)")
    args = parser.parse_args()

    from kipu.hooks.base import PublishRequest
    from kipu.hooks.platform import Credentials
    from kipu.platforms.x.hook import XHook

    from tests.fakes.x_server import XServer

    with XServer(limit=args.limit, window=args.window) as fake:
        token = fake.state.issue()["access_token"]
        hook = XHook(Credentials(None, fake.state.user["id"], SecretStr(token), username="ana"), base_url=fake.url)
        hook.token_rate = None  # the fake's time is scaled: only its window headers pace the hook
        started = time.perf_counter()
        for i in range(args.posts):
            hook.publish(
                PublishRequest(
                    idempotency_key=str(uuid.uuid4()), caption=f"bench post {i}", created_at=datetime.now(UTC)
                )
            )
        wall = time.perf_counter() - started
        texts = [t["text"] for t in fake.state.tweets]
        duplicates = len(texts) - len(set(texts))
        rate_limited = fake.state.rate_limited
    physical = args.limit / args.window
    print(
        f"{args.posts} posts in {wall:.1f} s = {args.posts / wall:.1f} posts/s against the fake's limit of "
        f"{physical:.1f} requests/s ({args.limit} per {args.window:g} s) = {args.posts / wall / physical:.0%} of it; "
        f"429s: {rate_limited}; duplicates: {duplicates}; published: {len(texts)}"
    )
    return 0 if rate_limited == 0 and duplicates == 0 and len(texts) == args.posts else 1


if __name__ == "__main__":
    raise SystemExit(main())
