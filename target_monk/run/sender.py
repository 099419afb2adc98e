"""Posting one batch: its parts within the byte cap, Monk's answer, rejected batches
split down to the events Monk refuses (dead-lettered), and the run's tallies.

`Delivery` calls a `Sender` from its worker threads; the sender knows nothing of
Singer, nor of how batches are ordered and checkpointed.
"""

from __future__ import annotations

import logging
import time
import typing as t

from target_monk.errors import MonkError, MonkRejectedError
from target_monk.monk.events import BATCH_PATH, encode_batch, encode_in_parts
from target_monk.run.summary import log_metric

if t.TYPE_CHECKING:
    from target_monk.monk.events import Poster
    from target_monk.proof.ledger import Ledger
    from target_monk.run.delivery import Batch
    from target_monk.run.files import DeadLetters
    from target_monk.run.summary import RunSummary

logger = logging.getLogger("target-monk")

SPLIT_ON = frozenset({400, 413, 422})
"""Statuses that reject a whole batch for what some of its events are."""


class Sender:
    """Sends a batch to Monk; raises if it cannot be delivered (or dead-lettered)."""

    def __init__(
        self,
        client: Poster,
        report: RunSummary,
        dead_letters: DeadLetters | None,
        max_batch_bytes: int,
        progress_every: int,
        ledger: Ledger | None = None,
    ) -> None:
        """Post with `client`, count in `report`; with `dead_letters`, split rejected
        batches instead of failing; with `ledger`, record what Monk accepted there
        before the batch counts as accepted."""
        self.client = client
        self.report = report
        self.dead_letters = dead_letters
        self.max_batch_bytes = max_batch_bytes
        self.progress_every = progress_every
        self.ledger = ledger

    def __call__(self, batch: Batch) -> None:
        """Send `batch` in as few requests as keep each within `max_batch_bytes`."""
        what = f"batch #{batch.number} ({len(batch.events)} events of stream '{batch.stream}')"
        started, status = time.monotonic(), "failed"
        try:
            parts = encode_in_parts(batch.events, self.max_batch_bytes)
            for number, (events, body) in enumerate(parts, 1):
                part_what = what if len(parts) == 1 else f"{what}, part {number}/{len(parts)}"
                self._post(batch.stream, events, body, part_what)
            status = "succeeded"
        finally:
            # From a sender taking the batch to Monk's last answer, retries included
            # (singer-sdk's own timer would only time the hand-over to delivery).
            seconds = time.monotonic() - started
            log_metric(
                "timer",
                "batch_processing_time",
                seconds,
                {"stream": batch.stream, "status": status},
            )

    def _post(self, stream: str, events: list[dict[str, t.Any]], body: bytes, what: str) -> None:
        """Post one body. With dead-lettering on, a batch Monk rejects as a whole is
        split in halves, recursively, until the rejected events stand alone: about
        2 * log2(batch size) extra requests per rejected event."""
        try:
            receipt = self.client.send_batch(body, what, len(events))
        except MonkRejectedError as exc:
            self.report.failed(stream, exc.attempts)
            if self.dead_letters is None or exc.status not in SPLIT_ON:
                raise
            if len(events) == 1:
                self.dead_letters.rejected(stream, events[0], exc)
                return
            logger.warning("%s; splitting it to find the rejected events", exc)
            middle = len(events) // 2
            for half, which in ((events[:middle], "first"), (events[middle:], "second")):
                half_what = f"{what}, {which} {len(half)} events"
                self._post(stream, half, encode_batch(half), half_what)
            return
        except MonkError as exc:
            self.report.failed(stream, exc.attempts)
            raise
        accepted = self.report.accepted(stream, events, len(body), receipt.attempts)
        if self.ledger is not None:
            self.ledger.record(stream, body, len(events), receipt.request_id)
        request = {
            "stream": stream,
            "endpoint": BATCH_PATH,
            "http_status_code": receipt.status,
            "status": "succeeded",
        }
        log_metric("timer", "http_request_duration", receipt.seconds, request)
        log_metric("counter", "events_accepted", len(events), {"stream": stream})
        logger.info(
            "Monk accepted %s (requestId %s, %d attempt(s))",
            what,
            receipt.request_id,
            receipt.attempts,
        )
        if accepted % self.progress_every == 0:
            logger.info(
                "Progress: %d requests accepted, %d events accepted, %.0f events/s",
                accepted,
                self.report.events_accepted(),
                self.report.events_per_second(),
            )
