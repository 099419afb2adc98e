"""Concurrent batch delivery with exact, ordered STATE checkpoints.

Every record gets a sequence number as it is received. A STATE received after
`n` records may be written once every record numbered below `n` is accepted,
whatever order the requests finish in. Records are either held (buffered in a
sink, not yet sent) or in a batch in flight; the lowest such number is the
watermark below which everything is accepted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

logger = logging.getLogger("target-monk.delivery")


@dataclass
class Batch:
    """Events ready to post, with the sequence number of their first record."""

    events: list[dict[str, t.Any]]
    first_seq: int
    label: str
    number: int = 0


@dataclass
class DeliveryStats:
    """Counts for the run summary."""

    batches: int = 0
    events_accepted: int = 0
    started_at: float = field(default_factory=time.monotonic)


class DeliveryFailed(Exception):
    """Raised in the reading thread once any batch has failed for good."""


class Delivery:
    """Owns the batches in flight and the STATE watermark.

    `send` posts one batch (blocking, with its own retries) and raises on failure;
    `write_state` writes one STATE line. Both are called from worker threads, one
    `write_state` at a time and always in input order.
    """

    def __init__(
        self,
        send: t.Callable[[Batch], object],
        write_state: t.Callable[[dict], None],
        max_in_flight: int = 4,
    ) -> None:
        """Start an idle pool of `max_in_flight` senders."""
        self._send = send
        self._write_state = write_state
        self._lock = threading.RLock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="monk-send")
        self._received = 0
        self._held: dict[t.Hashable, int] = {}
        self._in_flight: dict[int, int] = {}
        self._states: collections.deque[tuple[int, dict]] = collections.deque()
        self._last_written: dict | None = None
        self._failure: BaseException | None = None
        self.stats = DeliveryStats()

    # Called from the reading thread.

    def record_received(self, holder: t.Hashable) -> None:
        """Count one record, held by `holder` (e.g. a sink) until it submits."""
        if holder not in self._held:
            with self._lock:
                self._held[holder] = self._received
        self._received += 1

    def state_received(self, state: dict) -> None:
        """Queue a STATE behind every record received so far; write it if it is safe."""
        with self._lock:
            if self._states and self._states[-1][0] == self._received:
                self._states.pop()
            self._states.append((self._received, state))
            self._release_states()
        self.raise_if_failed()

    def submit(self, holder: t.Hashable, events: list[dict[str, t.Any]], label: str) -> None:
        """Send the events held by `holder`; blocks while `max_in_flight` batches are out."""
        first_seq = self._held.get(holder)
        if first_seq is None or not events:
            return
        while not self._slots.acquire(timeout=0.2):
            self.raise_if_failed()
        if self._failure is not None:
            self._slots.release()
            self.raise_if_failed()
        with self._lock:
            self.stats.batches += 1
            batch = Batch(events, first_seq, label, self.stats.batches)
            del self._held[holder]
            self._in_flight[batch.number] = first_seq
        self._pool.submit(self._deliver, batch)

    def finish(self) -> None:
        """Wait for every batch in flight; raise if any failed."""
        self._pool.shutdown(wait=True)
        self.raise_if_failed()
        with self._lock:
            self._release_states()

    def raise_if_failed(self) -> None:
        """Raise DeliveryFailed (from the first failure) once any batch has failed."""
        if self._failure is not None:
            raise DeliveryFailed(str(self._failure)) from self._failure

    def holders_blocking_states(self) -> list[t.Hashable]:
        """Holders whose buffered records keep the newest queued STATE from being written."""
        with self._lock:
            if not self._states:
                return []
            newest = self._states[-1][0]
            return [holder for holder, first in self._held.items() if first < newest]

    @property
    def all_accepted(self) -> bool:
        """True when every record received so far has been accepted."""
        with self._lock:
            return not self._held and not self._in_flight

    @property
    def unaccepted_batches(self) -> int:
        """Batches sent but not accepted (in flight or failed)."""
        return len(self._in_flight)

    # Called from worker threads.

    def _deliver(self, batch: Batch) -> None:
        try:
            self._send(batch)
        except BaseException as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = exc
            logger.error("%s", exc)
        else:
            with self._lock:
                del self._in_flight[batch.number]
                self.stats.events_accepted += len(batch.events)
                self._release_states()
        finally:
            self._slots.release()

    def _release_states(self) -> None:
        """Write the newest STATE whose records are all accepted (call under lock)."""
        floor = min(
            min(self._held.values(), default=self._received),
            min(self._in_flight.values(), default=self._received),
        )
        newest = None
        while self._states and self._states[0][0] <= floor:
            newest = self._states.popleft()[1]
        if newest is not None and newest != self._last_written:
            self._write_state(newest)
            self._last_written = newest
