"""Retries of object storage requests: exponential backoff with full jitter for transient
errors (timeouts, dropped connections, 5xx answers, throttling); none for permanent ones
(403 access denied, 404 not found, a malformed request), which are the caller's failure
to record."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Error codes S3 (and S3-compatible servers) answer when they are busy or failing.
TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}
# Exception class names of the HTTP stacks under fsspec (botocore, aiohttp, urllib3,
# requests) that mean the request did not complete, whatever the server would have said.
TRANSIENT_NAMES = (
    "Timeout",
    "ConnectionError",
    "ConnectionClosed",
    "EndpointConnectionError",
    "IncompleteRead",
    "ClientPayloadError",
    "ServerDisconnected",
    "ResponseParserError",
    "ProtocolError",
    "ReadTimeout",
    "ConnectTimeout",
    "ClientOSError",
    "RemoteDisconnected",
)
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; before try ``n`` (from 1) a pause drawn uniformly from
    ``[0, min(cap, base * 2**n))`` seconds ("full jitter": clients that failed together do
    not retry together)."""

    attempts: int = 6
    base_seconds: float = 0.25
    cap_seconds: float = 20.0

    def pause(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2**retry))


DEFAULT_POLICY = RetryPolicy()


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or during."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the answer behind ``exc`` (botocore, aiohttp, requests), if any."""
    for link in _chain(exc):
        response = getattr(link, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status:
                return int(status)
        for attribute in ("status", "status_code", "code"):
            value = getattr(link, attribute, None) or getattr(response, attribute, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
    return None


def error_code(exc: BaseException) -> str:
    """The S3 error code behind ``exc`` (``SlowDown``, ``AccessDenied``...), or ''."""
    for link in _chain(exc):
        response = getattr(link, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
    return ""


def is_transient(exc: BaseException) -> bool:
    """True when the same request may succeed if tried again later."""
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if error_code(exc) in TRANSIENT_CODES:
        return True
    for link in _chain(exc):
        if isinstance(link, PERMANENT):
            return False
        if isinstance(link, TimeoutError | ConnectionError | socket.timeout):
            return True
        names = [cls.__name__ for cls in type(link).__mro__]
        if any(part in name for name in names for part in TRANSIENT_NAMES):
            return True
    return False


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy | None = None,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """``call()``, tried again after a pause while it fails transiently (at most
    ``policy.attempts`` tries, :data:`DEFAULT_POLICY` when None); the last error, or any
    permanent one, is raised."""
    policy = policy or DEFAULT_POLICY
    rng = rng or random.Random()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == policy.attempts or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(policy.pause(attempt, rng))
    raise AssertionError("unreachable")  # pragma: no cover
