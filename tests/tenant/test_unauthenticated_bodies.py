"""Class 6: nothing unauthenticated is buffered. Through a real ``airflow api-server``: the token and the webhook
signature are checked from the headers before the body is read, a Content-Length over the limit is 413 at once, and
a chunked body is cut at the limit. Each test sends only part of a body and expects the answer anyway."""

from __future__ import annotations

import socket
import time

import pytest

from tests.tenant.conftest import Server

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def answer_before_body(server: Server, method: str, path: str, headers: dict[str, str], send: int) -> tuple[int, float]:
    """Send the headers and ``send`` bytes of a much longer body, then wait for the answer: a server that reads the
    body before deciding never answers (the test times out)."""
    with socket.create_connection(server.address, timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(_head(method, path, headers))
        try:
            for _ in range(0, send, 65536):
                sock.sendall(b"x" * min(65536, send))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: what these tests want
        data = sock.recv(65536)
        return _status(data), time.monotonic() - started


def chunked_until_answer(
    server: Server, path: str, headers: dict[str, str], limit: int, prefix: bytes = b""
) -> tuple[int, int]:
    """Stream a chunked body until the server answers; how many body bytes went out by then."""
    sent = 0
    chunk = b"x" * 65536
    with socket.create_connection(server.address, timeout=15) as sock:
        head = _head("POST", path, {**headers, "Transfer-Encoding": "chunked"})
        sock.sendall(head + (b"%x\r\n%s\r\n" % (len(prefix), prefix) if prefix else b""))
        sock.setblocking(False)
        while sent < 4 * limit:
            try:
                data = sock.recv(65536)
                if data:
                    return _status(data), sent
            except BlockingIOError:
                pass
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            time.sleep(0.02)  # a client at about 3 MB/s: the answer can be seen while it still sends
        sock.setblocking(True)
        sock.settimeout(15)
        return _status(sock.recv(65536)), sent


def test_an_upload_without_a_token_is_refused_before_its_body(airflow_server: Server) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(6 * MIB)}
    status, seconds = answer_before_body(airflow_server, "POST", "/kipu/api/media/upload?team=demo", headers, 65536)
    assert status == 401 and seconds < 10
    bad = {**headers, "Authorization": "Bearer kipu_not-a-real-token-at-all-000000000000000"}
    assert answer_before_body(airflow_server, "POST", "/kipu/api/media/upload?team=demo", bad, 65536)[0] == 401


def test_a_json_body_without_a_token_is_refused_before_it_is_read(airflow_server: Server) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(512 * 1024)}
    assert answer_before_body(airflow_server, "POST", "/kipu/api/workflows", headers, 1024)[0] == 401


def test_an_unsigned_webhook_is_refused_before_its_body(airflow_server: Server) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(64 * MIB)}
    for platform in ("facebook", "instagram", "threads", "youtube"):
        status, _ = answer_before_body(airflow_server, "POST", f"/kipu/api/webhooks/{platform}", headers, 2 * MIB)
        assert status == 401, platform


def test_a_declared_length_over_the_limit_is_413_at_once(airflow_server: Server) -> None:
    signed = {"Content-Type": "application/json", "Content-Length": str(64 * MIB), "X-Hub-Signature-256": "sha256=0"}
    assert answer_before_body(airflow_server, "POST", "/kipu/api/webhooks/facebook", signed, 1024)[0] == 413
    youtube = {"Content-Type": "application/atom+xml", "Content-Length": str(MIB), "X-Hub-Signature": "sha1=0"}
    assert answer_before_body(airflow_server, "POST", "/kipu/api/webhooks/youtube", youtube, 1024)[0] == 413
    member = airflow_server.tokens["member"]
    upload = {**member, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(6 * MIB)}
    assert answer_before_body(airflow_server, "POST", "/kipu/api/media/upload?team=demo", upload, 1024)[0] == 413
    body = {**member, "Content-Type": "application/json", "Content-Length": str(2 * MIB)}
    assert answer_before_body(airflow_server, "POST", "/kipu/api/workflows", body, 1024)[0] == 413


def test_a_chunked_body_is_cut_at_the_limit(airflow_server: Server) -> None:
    member = airflow_server.tokens["member"]
    status, sent = chunked_until_answer(
        airflow_server, "/kipu/api/workflows", {**member, "Content-Type": "application/json"}, MIB
    )
    assert status == 413 and sent < 3 * MIB
    multipart = {**member, "Content-Type": "multipart/form-data; boundary=x"}
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    status, sent = chunked_until_answer(airflow_server, "/kipu/api/media/upload?team=demo", multipart, MIB, part)
    assert status == 413 and sent < 3 * MIB
    signed = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=0"}
    status, sent = chunked_until_answer(airflow_server, "/kipu/api/webhooks/facebook", signed, MIB)
    assert status == 413 and sent < 3 * MIB


def test_public_routes_take_no_body_at_all(airflow_server: Server) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(MIB)}
    for path in ("/kipu/openapi.json", "/kipu/api/auth/callback/x?state=s&code=c"):
        assert answer_before_body(airflow_server, "GET", path, headers, 1024)[0] == 413
