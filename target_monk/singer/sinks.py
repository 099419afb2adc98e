"""The sink: singer-sdk's handle on one stream, over the run's `StreamBuffer`."""

from __future__ import annotations

import typing as t

from singer_sdk import metrics
from singer_sdk.sinks import BatchSink
from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk import Target

    from target_monk.run.buffers import StreamBuffer
    from target_monk.run.run import Run


class MonkSink(BatchSink):
    """One stream: its buffer, opened in the run when its SCHEMA arrives.

    On the SDK's path, `process_record` receives each record after the SDK's own
    per-record steps and only sets it aside (`staged`): the target hands the staged
    records to the run once those steps are over, so an error they raise is told
    apart from one in target-monk's own code (docs/architecture.md).

    singer-sdk makes sinks with a fixed signature, so a target makes its sinks from a
    class bound to its run (`bound_to`).
    """

    run: Run
    staged: list[tuple[StreamBuffer, dict[str, t.Any]]]
    """Records the SDK's steps passed, with their buffers, until the target takes them."""

    @classmethod
    def bound_to(cls, run: Run) -> type[MonkSink]:
        """This class, for the sinks of one run (sharing one list of staged records)."""
        return type(cls.__name__, (cls,), {"run": run, "staged": []})

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Open the stream in the run; refuse a stream that cannot be keyed."""
        super().__init__(target, stream_name, schema, key_properties)
        self.buffer: StreamBuffer = self.run.open_stream(stream_name, key_properties or (), schema)

    @property
    @override
    def is_full(self) -> bool:
        """Never, to singer-sdk: the run sends a batch when it is full, on both paths."""
        return False

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

    @override
    def process_record(self, record: dict[str, t.Any], context: dict[str, t.Any]) -> None:
        """The SDK's path: one record, after the SDK's own steps; set aside for the target."""
        self.staged.append((self.buffer, record))

    @override
    def get_batch_processing_timer(self) -> metrics.Timer:
        """A timer that logs nothing: singer-sdk's would time only the hand-over of a
        drained buffer to delivery. `Sender` logs `batch_processing_time` itself, up to
        Monk's answer."""
        return _SilentTimer(metrics.Metric.BATCH_PROCESSING_TIME)

    @override
    def process_batch(self, context: dict[str, t.Any]) -> None:
        """singer-sdk drains the sink (at the end of input): send what is buffered."""
        self.run.send(self.buffer)


class _SilentTimer(metrics.Timer):
    @override
    def __exit__(self, *exc_info: object) -> None:
        """Log nothing."""
