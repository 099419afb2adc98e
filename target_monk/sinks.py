"""The sink: maps each record to a Monk event as it arrives and hands full batches on."""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk.sinks import BatchSink
from typing_extensions import override

from target_monk.mapping import EventMapper, InvalidRecordError, MappingSettings

if t.TYPE_CHECKING:
    from target_monk.target import TargetMonk


class MonkSink(BatchSink):
    """One stream's events, buffered until `batch_size_rows`, then delivered.

    Records arrive by two paths (docs/architecture.md): the target's fast path calls
    `add_records` with runs of records as read; singer-sdk's path calls
    `process_record` once per record, after its own steps. Both map through
    `_map_into_batch`, so a record gives the same event either way.
    """

    def __init__(
        self,
        target: TargetMonk,
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Build the stream's mapper; refuse a stream that cannot be keyed."""
        super().__init__(target, stream_name, schema, key_properties)
        self._delivery = target.delivery
        self._dead_letters = target.dead_letters
        self._mapper = EventMapper(
            stream_name,
            key_properties or (),
            MappingSettings.from_config(target.config, stream_name),
            schema,
        )
        target.key_space.add(self._mapper)
        self._events: list[dict[str, t.Any]] = []
        self._count_per_batch = target.fast_path  # the SDK's path counts each record
        self._max_rows = self.max_size

    @override
    def _validate_and_parse(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """singer-sdk's per-record step (an SDK internal, called by
        `Target._process_record_message`), minus two things: the SDK's date-time
        parsing (mapping reads date-times itself, the same way on every path, so a
        stream map or validate_records never changes a key or an event) and its
        traceback log on an invalid record (the target reports it in one line).

        Raises:
            InvalidRecord: validate_records is on and the record breaks its schema.
        """
        if self._validator is not None:
            self._validator.validate(record)
        return record

    def record_key(self, record: t.Mapping[str, t.Any]) -> str:
        """The record's key property values, for error messages."""
        return self._mapper.record_key(record)

    @override
    def process_record(self, record: dict[str, t.Any], context: dict[str, t.Any]) -> None:
        """The SDK's path: one record, after the SDK's own per-record steps."""
        self._map_into_batch([record], 0, 1, dt.datetime.now(dt.UTC))

    def add_records(self, records: list[dict[str, t.Any]], start: int, now: dt.datetime) -> int:
        """The target's fast path: map records from `start` on into the batch, until the
        batch is full; return where it stopped. (The SDK's per-record steps copy the
        record, run stream maps, check key properties and validate; mapping does all
        the checking Monk needs itself.)"""
        stop = min(len(records), start + self._max_rows - self._batch_records_read)
        self._map_into_batch(records, start, stop, now)
        self.tally_record_read(stop - start)
        return stop

    def _map_into_batch(
        self, records: list[dict[str, t.Any]], start: int, stop: int, now: dt.datetime
    ) -> None:
        """Check and map each record now, so a bad one fails before its batch is sent
        (or, in dead-letter mode, is written down and skipped)."""
        events, hold, map_record = self._events, self._delivery.hold, self._mapper.map
        for index in range(start, stop):
            try:
                event = map_record(records[index], now)
            except InvalidRecordError as error:
                if self._dead_letters is None:
                    raise
                self._dead_letters.invalid(error, records[index])
                continue
            if not events:  # a new batch starts: its records are held from here
                hold(self, events)
            events.append(event)

    @override
    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Hand the buffered events to the delivery pool (returns once it has a slot)."""
        events, self._events = self._events, []
        if self._count_per_batch:
            self.record_counter_metric.increment(len(events))
        self._delivery.submit(self, events, self.stream_name)
