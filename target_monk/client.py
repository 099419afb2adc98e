"""HTTP client for Monk's batch events endpoint. Knows nothing of Singer, nor of files."""

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

from target_monk.encoding import encode_json
from target_monk.errors import (
    MonkAnswerError,
    MonkAuthError,
    MonkError,
    MonkRejectedError,
    MonkUnavailableError,
)

BATCH_PATH = "/v1/events/batch"
MAX_RETRY_AFTER_SECONDS = 300.0
"""A server's Retry-After is honoured up to this many seconds."""
_SHOWN_CHARS = 200

logger = logging.getLogger("target-monk.client")


def encode_batch(events: list[dict[str, t.Any]]) -> bytes:
    """The JSON body of one batch request (Decimal property values as numbers)."""
    return encode_json({"events": events})


Events = list[dict[str, t.Any]]


def encode_in_parts(events: Events, max_bytes: int) -> list[tuple[Events, bytes]]:
    """(events, body) for as few requests as keep each body within `max_bytes`
    (a single event larger than that still goes alone)."""
    body = encode_batch(events)
    if len(body) <= max_bytes or len(events) == 1:
        return [(events, body)]
    parts = -(-len(body) // max_bytes)  # ceil
    size = -(-len(events) // parts)
    return [
        piece
        for start in range(0, len(events), size)
        for piece in encode_in_parts(events[start : start + size], max_bytes)
    ]


class _TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's wish, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Receipt:
    """Monk's answer to an accepted batch."""

    count: int
    request_id: str
    attempts: int
    seconds: float = 0.0
    """How long the accepted request took, from sending it to Monk's answer."""
    status: int = 202


class Poster(t.Protocol):
    """What a sender posts through: `MonkClient`, or a dry run's stand-in."""

    def send_batch(self, body: bytes, label: str, count: int) -> Receipt:
        """Post one body of `count` events; return Monk's receipt, or raise a MonkError."""
        ...

    def stop(self) -> None:
        """Retry nothing from now on."""
        ...


class MonkClient:
    """Posts pre-encoded batches to `{api_url}/v1/events/batch`, with bounded retries.

    Safe to share between threads: each thread gets its own keep-alive session.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int,
        backoff_seconds: float,
        max_wait_seconds: float,
        user_agent: str = "target-monk",
    ) -> None:
        """Configure the endpoint. Retry n waits backoff_seconds * 2**(n-1), jittered
        between half and all of it, at most max_wait_seconds; or the server's
        Retry-After, at most MAX_RETRY_AFTER_SECONDS."""
        self.url = api_url.rstrip("/") + BATCH_PATH
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": user_agent,
        }
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_wait_seconds = max_wait_seconds
        self._local = threading.local()
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        """Never show the key."""
        return f"MonkClient(url={self.url!r})"

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
        return session

    def stop(self) -> None:
        """Retry nothing from now on: a batch makes at most its first attempt (within
        `timeout`), and retries waiting give up at once."""
        self._stopped.set()

    def send_batch(self, body: bytes, label: str, count: int) -> Receipt:
        """POST one JSON body of `count` events; return Monk's receipt once Monk
        answers 2xx with `{"status": "accepted", "count": count}`.

        Raises:
            MonkAuthError: 401/403.
            MonkRejectedError: 400/413/422 or another non-retryable 4xx.
            MonkAnswerError: a redirect, or a 2xx that is not that acceptance.
            MonkUnavailableError: retries exhausted, or stopped.

        Every MonkError raised carries the number of requests made (`attempts`).
        """
        attempts = 0
        try:
            while True:
                if attempts and self._stopped.is_set():
                    msg = f"Stopped retrying {label} after {attempts} attempt(s)"
                    raise MonkUnavailableError(msg)
                attempts += 1
                try:
                    return self._post_once(body, label, count, attempts)
                except _TransientError as failure:
                    if attempts > self.max_retries:
                        msg = (
                            f"Monk did not accept {label} after {attempts} attempt(s) to "
                            f"{self.url}; last failure: {failure.reason}"
                        )
                        raise MonkUnavailableError(msg) from None
                    wait = self._wait_time(attempts, failure.retry_after)
                    logger.warning(
                        "Retrying %s in %.1f s (attempt %d of %d failed: %s)",
                        label,
                        wait,
                        attempts,
                        self.max_retries + 1,
                        failure.reason,
                    )
                    self._stopped.wait(wait)
        except MonkError as error:
            error.attempts = attempts
            raise

    def _wait_time(self, failed_attempts: int, retry_after: float | None) -> float:
        return wait_time(failed_attempts, retry_after, self.backoff_seconds, self.max_wait_seconds)

    def _post_once(self, body: bytes, label: str, count: int, attempt: int) -> Receipt:
        started = time.monotonic()
        try:
            response = self._session.post(
                self.url, data=body, timeout=self.timeout, allow_redirects=False
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            reason, retried = transport_failure(exc, self.timeout)
            if not retried:
                msg = f"Cannot send {label} to {self.url}: {reason} (not retried)"
                raise MonkUnavailableError(msg) from None
            raise _TransientError(reason) from None

        status = response.status_code
        if 200 <= status < 300:
            return _acceptance(response, label, count, attempt, time.monotonic() - started)
        if 300 <= status < 400:
            msg = (
                f"Monk answered {label} with HTTP {status}, a redirect to "
                f"{response.headers.get('Location')!r}: redirects are never followed (the "
                f"POST would be re-sent as a GET). Check api_url (it posts to {self.url})."
            )
            raise MonkAnswerError(msg)
        error = error_envelope(response)
        if status == 429 or status >= 500:
            reason = f"HTTP {status} {error.get('code', '')}".rstrip()
            raise _TransientError(reason, retry_after(response))
        if status in (401, 403):
            msg = (
                f"API key refused by Monk (HTTP {status} {error.get('code', '')}) while "
                f"sending {label}: check api_key and that it has the usage:write scope"
            )
            raise MonkAuthError(msg)
        raise MonkRejectedError(label, status, error)


def wait_time(
    failed_attempts: int, retry_after: float | None, backoff_seconds: float, max_wait: float
) -> float:
    """Before retry n: backoff_seconds * 2**(n-1), jittered between half and all of it, at
    most `max_wait`; or the server's Retry-After, at most MAX_RETRY_AFTER_SECONDS."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_SECONDS)
    base = backoff_seconds * float(2 ** min(failed_attempts - 1, 30))
    return min(max_wait, base / 2 + random.uniform(0, base / 2))  # noqa: S311


def transport_failure(error: BaseException, timeout: float) -> tuple[str, bool]:
    """What went wrong on the way to Monk, in words, and whether it is retried. The
    rule: what can pass by itself is retried (a timeout, a refused, reset or dropped
    connection, an answer cut off mid-body: Monk may have stored that batch, and
    sending it again is harmless); what cannot is not (a host name that does not
    resolve, a TLS failure: check api_url)."""
    causes = _causes(error)
    kinds = tuple(type(cause) for cause in causes)
    if any(issubclass(kind, socket.gaierror) for kind in kinds):
        return "the host name does not resolve (DNS): check api_url", False
    if any(issubclass(kind, (ssl.SSLError, requests.exceptions.SSLError)) for kind in kinds):
        return f"TLS failed ({causes[-1]}): check api_url and the certificate", False
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


def _acceptance(
    response: requests.Response, label: str, count: int, attempt: int, seconds: float
) -> Receipt:
    """Monk's receipt, if the answer says it accepted exactly `count` events."""
    answer = _json_or_empty(response)
    if answer.get("status") == "accepted" and answer.get("count") == count:
        request_id = str(answer.get("requestId", ""))
        return Receipt(count, request_id, attempt, seconds, response.status_code)
    msg = (
        f"Monk's answer to {label} ({count} events) is not an acceptance of them: "
        f"HTTP {response.status_code} {response.text[:_SHOWN_CHARS]!r}. Nothing after "
        "it is checkpointed; check api_url (a proxy or maintenance page?)"
    )
    raise MonkAnswerError(msg)


def _json_or_empty(response: requests.Response) -> dict[str, t.Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def error_envelope(response: requests.Response) -> dict[str, t.Any]:
    error = _json_or_empty(response).get("error")
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
