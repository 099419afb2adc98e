"""Concurrent batch delivery with exact, ordered STATE checkpoints.

Records are numbered in the order they are received. A STATE received after
`n` records may be written once every record numbered below `n` is accepted,
whatever order the requests finish in. A record is either held (in a holder's
buffer, not yet sent) or in a batch sent and not yet accepted; the lowest first
number among those is the watermark below which everything is accepted.
Holders (e.g. one stream's buffer) tell how many records they took on, once per run
of records, so the per-record path costs nothing here.

Per-key order: Monk keeps the last write per idempotency key, so a batch holding a
key waits until every earlier batch holding it is accepted (and within a batch only
the latest version of a key is sent).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from target_monk.errors import DeliveryFailedError
from target_monk.monk.fields import KEY

logger = logging.getLogger("target-monk.delivery")


@dataclass
class Batch:
    """Events ready to post, with the sequence number of their first record."""

    events: list[dict[str, t.Any]]
    first_seq: int
    stream: str
    number: int = 0


H = t.TypeVar("H", bound=t.Hashable)


@dataclass
class _Held:
    """The records one holder keeps buffered, not yet submitted."""

    first_seq: int
    records: int
    since: float


class Delivery(t.Generic[H]):
    """Owns the batches in flight and the STATE watermark.

    `send` posts one batch (blocking, with its own retries) and raises on failure;
    `write_state` writes one STATE line. Both are called from worker threads, one
    `write_state` at a time and always in input order.
    """

    def __init__(
        self,
        send: t.Callable[[Batch], object],
        write_state: t.Callable[[dict], None],
        max_in_flight: int,
    ) -> None:
        """Start an idle pool of `max_in_flight` senders. Events are dicts; their
        idempotency key orders the writes of one key."""
        self._send = send
        self._write_state = write_state
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # a batch ended
        # One batch more than there are senders may wait, ready, for the next free
        # sender: the reader keeps filling the next batch instead of idling.
        self._slots = threading.BoundedSemaphore(max_in_flight + 1)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="monk-send")
        self._submitted = 0
        self._held: dict[H, _Held] = {}
        self._in_flight: dict[int, int] = {}
        self._keys_in_flight: dict[int, set] = {}
        self._running = 0  # batches handed to the pool and not yet ended
        self._states: collections.deque[tuple[int, dict]] = collections.deque()
        self._last_written: dict | None = None
        self._failure: BaseException | None = None
        self.batches_submitted = 0
        self.events_accepted = 0

    # Called from the reading thread.

    def add(self, holder: H, records: int) -> None:
        """`holder` took on `records` more records (a new batch of its own starts with
        the first): call it before any STATE that follows them is received."""
        with self._lock:
            held = self._held.get(holder)
            if held is None:
                self._held[holder] = _Held(self._received(), records, time.monotonic())
            else:
                held.records += records

    def state_received(self, state: dict) -> None:
        """Queue a STATE behind every record received so far; write it if it is safe."""
        with self._lock:
            position = self._received()
            if self._states and self._states[-1][0] == position:
                self._states.pop()
            self._states.append((position, state))
            self._release_states()
        self.raise_if_failed()

    def submit(self, holder: H, events: list[dict[str, t.Any]], stream: str) -> None:
        """Send the events held by `holder` (one per record it took on); blocks while an
        earlier unaccepted batch holds one of their keys, and while `max_in_flight`
        batches are being posted and one more is waiting for a sender."""
        held = self._held.get(holder)
        if held is None:
            return
        records = held.records
        keys = {event[KEY] for event in events}
        if len(keys) < len(events):  # a key more than once: only its latest version goes
            superseded = len(events)
            events = list({event[KEY]: event for event in events}.values())
            logger.info(
                "%d events of stream '%s' superseded by a later version of their key",
                superseded - len(events),
                stream,
            )
        with self._changed:
            while any(not keys.isdisjoint(other) for other in self._keys_in_flight.values()):
                self.raise_if_failed()
                self._changed.wait(0.2)
        while not self._slots.acquire(timeout=0.2):
            self.raise_if_failed()
        if self._failure is not None:
            self._slots.release()
            self.raise_if_failed()
        with self._lock:
            first_seq = self._held.pop(holder).first_seq
            self._submitted += records
            self.batches_submitted += 1
            batch = Batch(events, first_seq, stream, self.batches_submitted)
            self._in_flight[batch.number] = first_seq
            self._keys_in_flight[batch.number] = keys
            self._running += 1
        self._pool.submit(self._deliver, batch)

    def finish(self) -> None:
        """Wait for every batch in flight; raise if any failed."""
        self._pool.shutdown(wait=True)
        self.raise_if_failed()
        with self._lock:
            self._release_states()

    def raise_if_failed(self) -> None:
        """Raise DeliveryFailedError (from the first failure) once any batch has failed."""
        if self._failure is not None:
            raise DeliveryFailedError(str(self._failure)) from self._failure

    def holders_blocking_states(self) -> list[H]:
        """Holders whose buffered records keep the newest queued STATE from being written."""
        with self._lock:
            if not self._states:
                return []
            newest = self._states[-1][0]
            return [holder for holder, held in self._held.items() if held.first_seq < newest]

    def holders_older_than(self, seconds: float) -> list[H]:
        """Holders whose first buffered record arrived more than `seconds` ago."""
        started_before = time.monotonic() - seconds
        with self._lock:
            return [h for h, held in self._held.items() if held.since < started_before]

    def largest_holders(self, above: int) -> list[H]:
        """While more than `above` records are buffered in all: the holders whose
        batches, largest first, bring the total back to `above` or below."""
        with self._lock:
            sizes = [(held.records, holder) for holder, held in self._held.items()]
        sizes.sort(key=lambda pair: pair[0], reverse=True)
        total = sum(size for size, _ in sizes)
        chosen: list[H] = []
        for size, holder in sizes:
            if total <= above:
                break
            chosen.append(holder)
            total -= size
        return chosen

    def wait_for_running(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) until every batch handed to the senders has
        ended, accepted or not. For a run that failed: STATE lines they release are
        still written; then `halt()`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(min(left, 0.2))

    def halt(self) -> bool:
        """Stop writing STATE, for good: takes the lock and keeps it, so no STATE line
        can be half written either. Returns True if every record received was accepted.
        For a process about to exit."""
        self._lock.acquire()
        return not self._held and not self._in_flight

    # Called from worker threads.

    def _deliver(self, batch: Batch) -> None:
        try:
            if self._failure is not None:
                return  # a batch still waiting for a sender is not sent after a failure
            self._send(batch)
        except BaseException as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = exc
                    logger.error("%s", exc)
        else:
            with self._lock:
                del self._in_flight[batch.number]
                self.events_accepted += len(batch.events)
                self._release_states()
        finally:
            with self._changed:
                self._keys_in_flight.pop(batch.number, None)
                self._running -= 1
                self._changed.notify_all()
            self._slots.release()

    def _received(self) -> int:
        """Records received so far: those sent plus those held (call under lock)."""
        return self._submitted + sum(held.records for held in self._held.values())

    def _release_states(self) -> None:
        """Write the newest STATE whose records are all accepted (call under lock)."""
        firsts = [held.first_seq for held in self._held.values()]
        firsts.extend(self._in_flight.values())
        floor = min(firsts) if firsts else self._received()
        newest = None
        while self._states and self._states[0][0] <= floor:
            newest = self._states.popleft()[1]
        if newest is not None and newest != self._last_written:
            self._write_state(newest)
            self._last_written = newest
