"""Memory stays bounded on a large upload: a 1 GB sparse file goes through YouTubeHook's resumable upload to the fake
in a child process (so its peak RSS is the upload's alone), and every byte arrives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from tests.fakes.youtube_server import YouTubeServer

SIZE = 1 << 30  # 1 GiB
CHUNK = 8 << 20  # the hook's default: 32 x 256 KiB
PEAK_LIMIT_MB = 300

# Linux keeps ru_maxrss across exec, so a child started from the (large) pytest process would report pytest's peak:
# the child imports, then forks a worker whose ru_maxrss is its own, and the worker uploads.
CHILD = """
import json, os, resource, sys
from pydantic import SecretStr
from kipu.hooks.base import PublishRequest
from kipu.hooks.platform import Credentials
from kipu.platforms.youtube.hook import YouTubeHook
from kipu.specs.items import MediaRef

url, channel, token, path = sys.argv[1:5]
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    hook = YouTubeHook(Credentials(None, channel, SecretStr(token)), base_url=url)
    media = [MediaRef(url=path, mime_type="video/mp4")]
    result = hook.publish(PublishRequest(idempotency_key="big", content_type="video", caption="Big", media=media))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    os.write(write, json.dumps({"video": result.platform_post_id, "before_kib": before, "peak_kib": peak}).encode())
    os._exit(0)
os.close(write)
_, status = os.waitpid(pid, 0)
print(os.read(read, 4096).decode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_1_gb_upload_keeps_peak_rss_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as fh:
        fh.truncate(SIZE)  # sparse: no real disk use
    assert big.stat().st_size == SIZE and big.stat().st_blocks * 512 < 1 << 20
    with YouTubeServer(keep_bytes=False) as fake:  # the fake counts bytes and drops them
        token = fake.state.issue()["access_token"]
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, fake.url, fake.state.channel_id, token, str(big)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
            check=False,
        )
        elapsed = time.monotonic() - started
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        (video,) = fake.state.videos
        (upload,) = fake.state.sessions.values()
    peak_mb = report["peak_kib"] / 1024
    print(
        f"\n1 GiB upload: peak RSS {peak_mb:.0f} MB (after imports {report['before_kib'] / 1024:.0f} MB), "
        f"{len(upload.puts)} PUTs, {elapsed:.1f}s"
    )
    assert video["id"] == report["video"] and video["size"] == SIZE == upload.received
    assert upload.puts == [(n, min(n + CHUNK, SIZE) - 1) for n in range(0, SIZE, CHUNK)]
    assert peak_mb < PEAK_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB for a 1 GiB upload"
