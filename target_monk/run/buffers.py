"""One stream's partial batch: records mapped to Monk events as they arrive.

Knows neither Singer's messages nor HTTP: `Run` decides when a buffer is sent.
"""

from __future__ import annotations

import typing as t

from target_monk.errors import InvalidRecordError

if t.TYPE_CHECKING:
    import datetime as dt

    from target_monk.mapping.mapper import EventMapper

OnInvalid = t.Callable[[InvalidRecordError, dict[str, t.Any]], None]
"""Told of each record that cannot become an event: raises it, or sets it aside."""


class StreamBuffer:
    """The events of one stream waiting for their batch (at most `batch_rows`).

    Each record is checked and mapped as it arrives, so a bad one fails the run before
    its batch is sent (or is dead-lettered and skipped: `on_invalid` decides).
    """

    def __init__(self, mapper: EventMapper, batch_rows: int, on_invalid: OnInvalid) -> None:
        """Map with `mapper`; a batch is full at `batch_rows` events."""
        self.stream = mapper.stream
        self.mapper = mapper
        self.events: list[dict[str, t.Any]] = []
        self._batch_rows = batch_rows
        self._on_invalid = on_invalid

    @property
    def full(self) -> bool:
        """The batch has `batch_rows` events: send it before adding more."""
        return len(self.events) >= self._batch_rows

    def add(self, records: list[dict[str, t.Any]], start: int, now: dt.datetime) -> int:
        """Map records from `start` on into the batch until it is full; return where it
        stopped. `now` is the current time, for Monk's no-more-than-1h-ahead rule.

        Raises:
            InvalidRecordError: a record that cannot become an event, if `on_invalid`
                raises it.
        """
        stop = min(len(records), start + self._batch_rows - len(self.events))
        events, map_record = self.events, self.mapper.map
        for index in range(start, stop):
            try:
                events.append(map_record(records[index], now))
            except InvalidRecordError as error:
                self._on_invalid(error, records[index])
        return stop

    def take(self) -> list[dict[str, t.Any]]:
        """The batch's events, leaving the buffer empty for the next batch."""
        events, self.events = self.events, []
        return events
