"""Monk's HTTP, shared by every request: the one bounded retry loop, the waits
(backoff, Retry-After), transport failures in words, Monk's error bodies. Knows
nothing of Singer, nor of the ledger."""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import ssl
import threading
import time
import typing as t
from dataclasses import dataclass

import requests

MAX_RETRY_AFTER_SECONDS = 300.0
"""A server's Retry-After is honoured up to this many seconds."""
SHOWN_CHARS = 200
"""How much of an answer that is not what Monk documents an error quotes."""

logger = logging.getLogger("target-monk.client")
STOPPED = "stopped retrying"
"""The reason `Retries.run` gives up with when its `stopped` event was set."""
T = t.TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's wish, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Retries:
    """How a request is retried: at most `max_retries` times after the first attempt,
    retry n waiting backoff_seconds * 2**(n-1), jittered between half and all of it, at
    most max_wait_seconds; or the server's Retry-After, at most MAX_RETRY_AFTER_SECONDS."""

    max_retries: int
    backoff_seconds: float
    max_wait_seconds: float

    def wait(self, failed_attempts: int, retry_after: float | None) -> float:
        """Seconds to wait after `failed_attempts` attempts (the server's Retry-After,
        if it gave one)."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        base = self.backoff_seconds * float(2 ** min(failed_attempts - 1, 30))
        return min(self.max_wait_seconds, base / 2 + random.uniform(0, base / 2))  # noqa: S311

    def run(
        self,
        attempt: t.Callable[[int], T],
        what: str,
        give_up: t.Callable[[int, str], Exception],
        stopped: threading.Event | None = None,
    ) -> T:
        """The one bounded retry loop of every request to Monk: `attempt(n)` until it
        returns; each `TransientError` it raises is retried, after the wait, while retries
        are left and `stopped` is not set (the wait ends early when it is set; Ctrl-C
        interrupts it). Then `give_up(attempts, why)` is raised (why: the last failure, or
        `STOPPED`)."""
        stopped = stopped or threading.Event()
        attempts = 0
        while True:
            attempts += 1
            try:
                return attempt(attempts)
            except TransientError as failure:
                if attempts > self.max_retries:
                    raise give_up(attempts, failure.reason) from None
                wait = self.wait(attempts, failure.retry_after)
                logger.warning(
                    "Retrying %s in %.1f s (attempt %d of %d failed: %s)",
                    what,
                    wait,
                    attempts,
                    self.max_retries + 1,
                    failure.reason,
                )
                if stopped.wait(wait):
                    raise give_up(attempts, STOPPED) from None


def transport_failure(
    error: BaseException, timeout: float, setting: str = "api_url"
) -> tuple[str, bool]:
    """What went wrong on the way to Monk, in words, and whether it is retried. The
    rule: what can pass by itself is retried (a timeout, a refused, reset or dropped
    connection, an answer cut off mid-body: Monk may have stored that batch, and
    sending it again is harmless); what cannot is not (a host name that does not
    resolve, a TLS failure: check the URL's `setting`)."""
    causes = _causes(error)
    kinds = tuple(type(cause) for cause in causes)
    if any(issubclass(kind, socket.gaierror) for kind in kinds):
        return f"the host name does not resolve (DNS): check {setting}", False
    if any(issubclass(kind, (ssl.SSLError, requests.exceptions.SSLError)) for kind in kinds):
        return f"TLS failed ({causes[-1]}): check {setting} and the certificate", False
    if any(issubclass(kind, requests.Timeout) for kind in kinds):
        return f"no answer within {timeout:g} s", True
    if any(issubclass(kind, requests.exceptions.ChunkedEncodingError) for kind in kinds):
        return "the answer was cut off (the connection broke while it was read)", True
    if any(issubclass(kind, ConnectionRefusedError) for kind in kinds):
        return "connection refused", True
    if any(issubclass(kind, (ConnectionResetError, BrokenPipeError)) for kind in kinds):
        return "connection reset", True
    if any("RemoteDisconnected" in kind.__name__ for kind in kinds):
        return "connection closed without an answer", True
    return f"connection error ({type(error).__name__})", True


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps (requests and urllib3 nest their causes in args,
    `reason`, `__cause__` and `__context__`), outermost first."""
    found: list[BaseException] = []
    pending = [error]
    while pending and len(found) < 20:
        cause = pending.pop(0)
        if any(cause is seen for seen in found):
            continue
        found.append(cause)
        nested = [*cause.args, getattr(cause, "reason", None), cause.__cause__, cause.__context__]
        pending.extend(item for item in nested if isinstance(item, BaseException))
    return found


def json_or_empty(response: requests.Response) -> dict[str, t.Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def error_envelope(response: requests.Response) -> dict[str, t.Any]:
    error = json_or_empty(response).get("error")
    if isinstance(error, dict):
        return error
    return {"code": "", "message": response.text[:500]}


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
