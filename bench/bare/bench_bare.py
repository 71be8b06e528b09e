"""Bare Airflow, for ``bench/e2e.py``'s baseline: the bench workflow's three steps as plain ``@task`` functions doing
the same work (the hashtag filter, Kipu's offline rewriter, an atomic JSON write to an outbox folder)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG, task

with DAG(
    dag_id="bench_bare",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["bench"],
):

    @task
    def no_ads(**context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        item = context["dag_run"].conf["item"]
        if "ad" in [t.lower() for t in item.get("hashtags", [])]:
            raise AirflowSkipException("hashtag #ad is present")
        return item

    @task
    def rewrite(item: dict[str, Any]) -> dict[str, Any]:
        from kipu.captions.rewriter import RewriteRequest, rewrite

        result = rewrite(RewriteRequest(text=item["caption"], target_platform="bluesky"))
        return {**item, "caption": result.caption}

    @task
    def publish(item: dict[str, Any]) -> str:
        import json
        import os
        import tempfile
        from pathlib import Path

        folder = Path(os.environ["KIPU_BENCH_BARE_OUTBOX"])
        folder.mkdir(parents=True, exist_ok=True)
        body = {
            "key": item["platform_post_id"],
            "caption": item["caption"],
            "published_at": datetime.now(UTC).isoformat(),
        }
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh)
        os.replace(tmp, folder / f"{item['platform_post_id']}.json")
        return body["key"]

    publish(rewrite(no_ads()))
