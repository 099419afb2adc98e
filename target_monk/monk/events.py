"""Posting events to Monk's batch endpoint (`/v1/events/batch`): request bodies,
strict acceptance, bounded retries. Knows nothing of Singer, nor of files."""

from __future__ import annotations

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
from target_monk.monk import http
from target_monk.monk.http import (
    SHOWN_CHARS,
    STOPPED,
    Retries,
    TransientError,
    error_envelope,
    json_or_empty,
    retry_after,
)

BATCH_PATH = "/v1/events/batch"


def encode_batch(events: list[dict[str, t.Any]]) -> bytes:
    """The JSON body of one batch request (Decimal property values as numbers)."""
    return encode_json({"events": events})


def batch_of_encoded(events: t.Iterable[bytes]) -> bytes:
    """The JSON body of one batch request of events already encoded, byte for byte."""
    return b'{"events":[' + b",".join(events) + b"]}"


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

    def send_batch(self, body: bytes, what: str, count: int) -> Receipt:
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
    ) -> None:
        """Configure the endpoint and its retries (`Retries`)."""
        self.url = api_url.rstrip("/") + BATCH_PATH
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "target-monk",
        }
        self.timeout = timeout
        self.retries = Retries(max_retries, backoff_seconds, max_wait_seconds)
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

    def send_batch(self, body: bytes, what: str, count: int) -> Receipt:
        """POST one JSON body of `count` events; return Monk's receipt once Monk
        answers 2xx with `{"status": "accepted", "count": count}`.

        Raises:
            MonkAuthError: 401/403.
            MonkRejectedError: 400/413/422 or another non-retryable 4xx.
            MonkAnswerError: a redirect, or a 2xx that is not that acceptance.
            MonkUnavailableError: retries exhausted, or stopped.

        Every MonkError raised carries the number of requests made (`attempts`).
        """
        made = 0

        def attempt(number: int) -> Receipt:
            nonlocal made
            made = number
            return self._post_once(body, what, count, number)

        def give_up(attempts: int, reason: str) -> MonkUnavailableError:
            if reason == STOPPED:
                return MonkUnavailableError(f"Stopped retrying {what} after {attempts} attempt(s)")
            return MonkUnavailableError(
                f"Monk did not accept {what} after {attempts} attempt(s) to {self.url}; "
                f"last failure: {reason}"
            )

        try:
            return self.retries.run(attempt, what, give_up, self._stopped)
        except MonkError as error:
            error.attempts = made
            raise

    def _post_once(self, body: bytes, what: str, count: int, attempt: int) -> Receipt:
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
            reason, retried = http.transport_failure(exc, self.timeout)
            if not retried:
                msg = f"Cannot send {what} to {self.url}: {reason} (not retried)"
                raise MonkUnavailableError(msg) from None
            raise TransientError(reason) from None

        status = response.status_code
        if 200 <= status < 300:
            return _acceptance(response, what, count, attempt, time.monotonic() - started)
        if 300 <= status < 400:
            msg = (
                f"Monk answered {what} with HTTP {status}, a redirect to "
                f"{response.headers.get('Location')!r}: redirects are never followed (the "
                f"POST would be re-sent as a GET). Check api_url (it posts to {self.url})."
            )
            raise MonkAnswerError(msg)
        error = error_envelope(response)
        if status == 429 or status >= 500:
            reason = f"HTTP {status} {error.get('code', '')}".rstrip()
            raise TransientError(reason, retry_after(response))
        if status in (401, 403):
            msg = (
                f"API key refused by Monk (HTTP {status} {error.get('code', '')}) while "
                f"sending {what}: check api_key and that it has the usage:write scope"
            )
            raise MonkAuthError(msg)
        raise MonkRejectedError(what, status, error)


def _acceptance(
    response: requests.Response, what: str, count: int, attempt: int, seconds: float
) -> Receipt:
    """Monk's receipt, if the answer says it accepted exactly `count` events."""
    answer = json_or_empty(response)
    if answer.get("status") == "accepted" and answer.get("count") == count:
        request_id = str(answer.get("requestId", ""))
        return Receipt(count, request_id, attempt, seconds, response.status_code)
    msg = (
        f"Monk's answer to {what} ({count} events) is not an acceptance of them: "
        f"HTTP {response.status_code} {response.text[:SHOWN_CHARS]!r}. Nothing after "
        "it is checkpointed; check api_url (a proxy or maintenance page?)"
    )
    raise MonkAnswerError(msg)
