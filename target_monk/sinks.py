"""The sink: maps each record to a Monk event as it arrives and hands full batches on."""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk.sinks import BatchSink

from target_monk.mapping import EventMapper, InvalidRecordError, MappingSettings

if t.TYPE_CHECKING:
    from target_monk.target import TargetMonk


class MonkSink(BatchSink):
    """One stream's events, buffered until `batch_size_rows`, then delivered."""

    def __init__(
        self,
        target: TargetMonk,
        stream_name: str,
        schema: dict,
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Build the stream's mapper; refuse a stream that cannot be keyed."""
        super().__init__(target, stream_name, schema, key_properties)
        self._target = target
        self._delivery = target.delivery
        self._mapper = EventMapper(
            stream_name,
            key_properties or (),
            MappingSettings.from_config(target.config, stream_name),
        )
        self._events: list[dict[str, t.Any]] = []
        self._count_per_batch = target.fast_path  # the SDK's path counts each record
        self._max_rows = self.max_size

    def process_record(self, record: dict, context: dict) -> None:
        """Validate and map the record now, so a bad one fails before its batch is sent."""
        self._buffer_event(record)

    def add_record(self, record: dict) -> bool:
        """The target's fast path for one record (no SDK per-record steps); True when full.

        The SDK's path copies the record, runs stream maps, checks key properties and
        parses date-time strings; mapping does all the checking Monk needs itself.
        """
        self._buffer_event(record)
        self.tally_record_read()
        return self._batch_records_read >= self._max_rows

    def _buffer_event(self, record: dict) -> None:
        try:
            event = self._mapper.map(record, dt.datetime.now(dt.timezone.utc))
        except InvalidRecordError as error:
            if self._target.dead_letters is None:
                raise
            self._target.dead_letter_invalid(error, record)
            return
        if not self._events:  # a new batch starts: its records are held from here
            self._delivery.hold(self, self._events)
        self._events.append(event)

    def process_batch(self, context: dict) -> None:
        """Hand the buffered events to the delivery pool (returns once it has a slot)."""
        events, self._events = self._events, []
        if self._count_per_batch:
            self.record_counter_metric.increment(len(events))
        self._delivery.submit(self, events, self.stream_name)
