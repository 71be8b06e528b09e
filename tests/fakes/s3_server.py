"""Real S3 semantics for tests: moto's S3 server (``ThreadedMotoServer``) on a free loopback port with one bucket,
reached through the amazon provider's ``kipu_media_s3`` connection. moto 5.2.5 does not check a presigned URL's
expiry, so a thin WSGI layer in front answers an expired one as S3 does: 403 ``AccessDenied`` "Request has expired"
(AWS S3 user guide, "Download and upload objects with presigned URLs")."""

from __future__ import annotations

import json
import logging
import time
from calendar import timegm
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from moto.server import DomainDispatcherApplication, MotoRequestHandler, ThreadedMotoServer, create_backend_app
from werkzeug.serving import make_server

CONN_ID = "kipu_media_s3"
CONN_ENV = "AIRFLOW_CONN_KIPU_MEDIA_S3"
ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _expired(query: str, now: float) -> bool:
    """Whether a presigned query (SigV4 ``X-Amz-Date`` + ``X-Amz-Expires``, or SigV2 ``Expires``) is past its end."""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    if "X-Amz-Date" in params and "X-Amz-Expires" in params:
        signed = timegm(datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").timetuple())
        return now > signed + int(params["X-Amz-Expires"])
    if "Signature" in params and "Expires" in params:
        return now > int(params["Expires"])
    return False


def _enforce_expiry(app: WsgiApp) -> WsgiApp:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _expired(environ.get("QUERY_STRING", ""), time.time()):
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                b"<Message>Request has expired</Message></Error>"
            )
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return wrapped


class _Server(ThreadedMotoServer):
    """``ThreadedMotoServer`` with the expiry layer; the body mirrors moto 5.2.5's ``_server_entry``."""

    def _server_entry(self) -> None:
        app = _enforce_expiry(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class S3Server:
    """``with S3Server() as s3:`` a moto S3 endpoint at ``s3.url`` (port 0: the OS picks a free one)."""

    def __init__(self) -> None:
        self._server = _Server(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def __enter__(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every bucket and object (moto keeps its state per process, not per server)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (JSON form of ``AIRFLOW_CONN_KIPU_MEDIA_S3``): the amazon provider reads
        ``endpoint_url`` and ``region_name`` from the extra (``AwsConnectionWrapper``)."""
        return {
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {"endpoint_url": self.url, "region_name": REGION},
        }

    def connection_env(self) -> str:
        return json.dumps(self.connection())

    def client(self) -> Any:
        """A plain boto3 client on the same endpoint, for assertions that bypass Kipu."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def pending_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        return [u["Key"] for u in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
