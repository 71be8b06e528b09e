"""One TLS context per process for Kipu's HTTP clients: building one loads the CA bundle, about 70 ms of CPU, which
every task process paid once per client (py-spy over a burst: 7.6 % of a Kipu task's samples)."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def context() -> ssl.SSLContext:
    """httpx's default context (certifi's CA bundle, certificates and host names checked). Shared, never changed;
    a worker builds it before forking its task processes (``kipu.celery_config.warm``)."""
    return httpx.create_ssl_context()
