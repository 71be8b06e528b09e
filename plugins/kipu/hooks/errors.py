"""The error taxonomy every platform maps onto: what a caller may retry, what needs the user, what is final."""

from __future__ import annotations

from typing import ClassVar


class PlatformError(Exception):
    """Base of the error taxonomy every platform maps onto."""

    retryable: ClassVar[bool] = False


class Transient(PlatformError):
    retryable = True


class RateLimited(PlatformError):
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthExpired(PlatformError):
    retryable = True


class Rejected(PlatformError):
    """The platform refused the content; retrying cannot help."""


class NeedsReconnect(PlatformError):
    """The connection must be re-authorised by the user."""
