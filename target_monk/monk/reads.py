"""Reading events back from Monk (`GET /v1/events` on the Monk API host), for reconcile.

Monk documents the endpoint and its `customerId`, `start` and `end` filters but not
its answer (../shared/reference/monk-api.md, "Reading back"). Every assumption about
it is in this module, one constant each; the docs name them and the emulator
serves the same shape. Requests keep to Monk's rate limit with a token bucket, and
429s (with Retry-After), 5xx, timeouts and dropped connections are retried, bounded.
Knows nothing of Singer, nor of the ledger.
"""

from __future__ import annotations

import threading
import time
import typing as t

import requests

from target_monk.errors import ReconcileError
from target_monk.monk.fields import CUSTOMER_ID, EXTERNAL_CUSTOMER_ID, KEY
from target_monk.monk.http import (
    Retries,
    TransientError,
    error_envelope,
    retry_after,
    transport_failure,
)

# Assumed (Monk does not document these); change them here and only here.
EVENTS_PATH = "/v1/events"
"""Documented: GET, on the Monk API host (not the events host)."""
CUSTOMER_FILTERS = {CUSTOMER_ID: "customerId", EXTERNAL_CUSTOMER_ID: "externalCustomerId"}
"""Assumed: an event's customer field is also the name of the query filter for it."""
START_PARAM, END_PARAM = "start", "end"
"""Documented names. Assumed: start inclusive, end exclusive, ISO dates, compared with
the event's timestamp (not when Monk received it)."""
PAGE_SIZE_PARAM, PAGE_SIZE = "limit", 1000
"""Assumed: `limit` sets the page size, at most 1,000."""
CURSOR_PARAM = "cursor"
"""Assumed: the next page is asked for with `cursor=<nextCursor>`."""
DATA, HAS_MORE, NEXT_CURSOR = "data", "hasMore", "nextCursor"
"""Assumed answer: {"data": [Event, ...], "hasMore": bool, "nextCursor": str | null}."""
COMPARED_FIELDS = ("customerId", "externalCustomerId", "eventName", "timestamp", "properties")
"""Assumed: each listed event carries the fields sent (plus `id` and `receivedAt`),
once per idempotency key, in its latest version."""
KEY_FIELD = KEY
MAX_PAGES = 100_000
"""A bound on one listing (100 million events): a cursor that never ends is an error."""


class RateLimit:
    """A token bucket that keeps to `requests` per `seconds` in *any* window of that
    length: it holds `burst` = requests // 10 tokens (at least 1) and refills at
    (requests - burst) / seconds, so a window sees at most burst + (requests - burst).
    Thread-safe; `acquire` waits with `sleep` (Ctrl-C interrupts it)."""

    def __init__(
        self,
        requests: int,
        seconds: float = 60.0,
        clock: t.Callable[[], float] = time.monotonic,
        sleep: t.Callable[[float], None] = time.sleep,
    ) -> None:
        """Allow `requests` per `seconds`."""
        self.burst = max(1, requests // 10)
        self.rate = max(requests - self.burst, 1) / seconds
        self._tokens = float(self.burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        self._sleep = sleep

    def acquire(self) -> None:
        """Take a token, waiting for one."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # float rounding must not leave it waiting
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)


class MonkReader:
    """Lists one customer's events from Monk, page by page, within the rate limit."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        limit: RateLimit,
        timeout: float,
        max_retries: int,
        backoff_seconds: float,
        max_wait_seconds: float,
    ) -> None:
        """Read from `{api_url}/v1/events` with `api_key` (it needs usage:read)."""
        self.url = api_url.rstrip("/") + EVENTS_PATH
        self.limit = limit
        self.timeout = timeout
        self.retries = Retries(max_retries, backoff_seconds, max_wait_seconds)
        self.requests = 0
        self.throttled = 0
        self._session = requests.Session()
        self._session.headers.update(
            {"Authorization": f"Bearer {api_key}", "User-Agent": "target-monk reconcile"}
        )

    def __repr__(self) -> str:
        """Never show the key."""
        return f"MonkReader(url={self.url!r})"

    def events(
        self, customer_field: str, customer: str, start: str, end: str
    ) -> t.Iterator[dict[str, t.Any]]:
        """The customer's events with start <= timestamp < end (ISO dates), as Monk
        lists them, page after page.

        Raises:
            ReconcileError: a page could not be read (after bounded retries), or an
                answer is not of the assumed shape.
        """
        params = {
            CUSTOMER_FILTERS[customer_field]: customer,
            START_PARAM: start,
            END_PARAM: end,
            PAGE_SIZE_PARAM: str(PAGE_SIZE),
        }
        for _ in range(MAX_PAGES):
            page = self._get(params, f"events of {customer_field} {customer!r}")
            data, cursor = page.get(DATA), page.get(NEXT_CURSOR)
            if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
                msg = f"Monk's answer at {self.url} has no '{DATA}' list of events"
                raise ReconcileError(msg)
            yield from data
            if not page.get(HAS_MORE):
                return
            if not isinstance(cursor, str) or not cursor:
                msg = f"Monk's answer at {self.url} says hasMore but gives no {NEXT_CURSOR}"
                raise ReconcileError(msg)
            params[CURSOR_PARAM] = cursor
        msg = f"more than {MAX_PAGES} pages of events for {customer!r}: stopped"
        raise ReconcileError(msg)

    def _get(self, params: dict[str, str], what: str) -> dict[str, t.Any]:
        def attempt(_: int) -> dict[str, t.Any]:
            self.limit.acquire()
            self.requests += 1
            return self._get_once(params, what)

        def give_up(attempts: int, reason: str) -> ReconcileError:
            return ReconcileError(
                f"Cannot read {what} from {self.url} after {attempts} attempt(s): {reason}"
            )

        return self.retries.run(attempt, f"reading {what}", give_up)

    def _get_once(self, params: dict[str, str], what: str) -> dict[str, t.Any]:
        """Monk's answer.

        Raises:
            TransientError: a failure worth retrying.
            ReconcileError: a failure not worth retrying.
        """
        try:
            response = self._session.get(
                self.url, params=params, timeout=self.timeout, allow_redirects=False
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason, retried = transport_failure(exc, self.timeout, "read_api_url")
            if not retried:
                msg = f"Cannot read {what} from {self.url}: {reason}"
                raise ReconcileError(msg) from None
            raise TransientError(reason) from None
        status = response.status_code
        if status == 200:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                msg = f"Monk's answer at {self.url} is not a JSON object: {response.text[:200]!r}"
                raise ReconcileError(msg)
            return answer
        error = error_envelope(response)
        reason = f"HTTP {status} {error.get('code', '')}".rstrip()
        if status == 429 or status >= 500:
            if status == 429:
                self.throttled += 1
            raise TransientError(reason, retry_after(response))
        hint = ": check that the key has the usage:read scope" if status in (401, 403) else ""
        msg = f"Monk refused to list {what} ({reason}: {error.get('message', '')}){hint}"
        raise ReconcileError(msg)
