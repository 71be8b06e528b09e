"""AI rewriting throughput: 1,000 captions with 16 requests in flight against the fake OpenAI server (300 ms).

In the same run: the same code called sequentially (a sample), the cache-hit path (the same 1,000 again), and the
overhead Kipu adds per call (sequential time per call minus the fake's latency). Store: PostgreSQL by default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--sample", type=int, default=40, help="sequential calls for the baseline")
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    os.environ.setdefault("ENCRYPTION_KEY", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
    os.environ.setdefault("KIPU_HOME", tempfile.mkdtemp(prefix="kipu-bench-ai-"))

    from tests import pg
    from tests.fakes.openai_server import OpenAIServer

    url = pg.create_database() if args.store == "postgres" else f"sqlite:///{tempfile.mkdtemp()}/kipu.db"
    os.environ["KIPU_DATABASE_URL"] = url
    from kipu.ai.connection import from_fields
    from kipu.ai.service import rewrite_caption
    from kipu.captions.platforms import rules_for
    from kipu.captions.rewriter import RewriteRequest
    from kipu.store.accounts import get_or_create_profile, get_or_create_team
    from kipu.store.engine import reset_engines, session_scope
    from kipu.store.migrate import upgrade

    upgrade(url)
    reset_engines()
    with session_scope() as s:
        team_id = get_or_create_team(s, "Bench", get_or_create_profile(s, "o@bench.test"), "bench").id
    platforms = ["x", "bluesky", "threads", "instagram", "linkedin"]
    run = uuid.uuid4().hex[:8]

    def request(i: int, tag: str) -> RewriteRequest:
        return RewriteRequest(
            text=f"Caption {tag}-{run}-{i}: fresh pasta tonight with @ana https://example.com/{i} #pasta #fyp",
            target_platform=platforms[i % len(platforms)],
        )

    try:
        with OpenAIServer(latency=args.latency) as fake:
            conn = from_fields("sk-bench", fake.base_url, {"model": "gpt-4o-mini", "time_budget": 120})
            assert conn is not None

            def call(r: RewriteRequest) -> float:
                t0 = time.perf_counter()
                result = rewrite_caption(r, team_id=team_id, conn=conn)
                assert not rules_for(r.target_platform).violations(result.caption)
                return time.perf_counter() - t0

            seq = [call(request(i, "seq")) for i in range(args.sample)]
            started = time.perf_counter()
            with ThreadPoolExecutor(args.in_flight) as pool:
                misses = list(pool.map(call, [request(i, "par") for i in range(args.captions)]))
            wall = time.perf_counter() - started
            started = time.perf_counter()
            with ThreadPoolExecutor(args.in_flight) as pool:
                hits = list(pool.map(call, [request(i, "par") for i in range(args.captions)]))
            hit_wall = time.perf_counter() - started
            model_calls = len(fake.requests)
    finally:
        reset_engines()
        if args.store == "postgres":
            pg.drop_database(url)

    seq_rate = 1 / statistics.mean(seq)
    rate = args.captions / wall
    print(
        f"{args.captions} captions, {args.in_flight} in flight, fake latency {args.latency * 1000:.0f} ms "
        f"({args.store} store): {rate:.1f} captions/s vs sequential {seq_rate:.2f}/s = {rate / seq_rate:.1f}x "
        f"(ideal {args.in_flight}x); model calls {model_calls} for {args.captions + args.sample} new captions"
    )
    print(
        f"cache hits: {args.captions / hit_wall:.0f} captions/s, median {statistics.median(hits) * 1000:.1f} ms vs "
        f"median miss {statistics.median(misses) * 1000:.0f} ms = {statistics.median(misses) / statistics.median(hits):.0f}x"
    )
    print(
        f"overhead per call (sequential, fake latency subtracted): median "
        f"{(statistics.median(seq) - args.latency) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
