"""target-monk: deliver any Singer tap's records to Monk as billed usage events."""

from __future__ import annotations

import os
import sys
import time
import typing as t

import msgspec
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import RecordsWithoutSchemaException
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_monk.client import MonkClient, MonkError, encode_in_parts
from target_monk.delivery import Batch, Delivery, DeliveryFailed
from target_monk.mapping import InvalidRecordError, MappingConfigError
from target_monk.reader import SingerBytesReader
from target_monk.sinks import MonkSink

if t.TYPE_CHECKING:
    from pathlib import PurePath
    from types import FrameType

MAX_BATCH_EVENTS = 10_000
"""Monk's limit of events per request."""
DEFAULT_MAX_BATCH_BYTES = 5_000_000
"""A safety margin: Monk publishes no byte limit for a request body."""

_MAPPING_SETTINGS = th.PropertiesList(
    th.Property(
        "customer_id_field",
        th.StringType,
        default="customer_id",
        description="Source field for customerId (Monk's customer UUID).",
    ),
    th.Property(
        "external_customer_id_field",
        th.StringType,
        default="external_customer_id",
        description="Source field for externalCustomerId, used when customerId is empty.",
    ),
    th.Property(
        "event_name_field",
        th.StringType,
        default="event_name",
        description="Source field for eventName.",
    ),
    th.Property(
        "event_name",
        th.StringType,
        description="A constant eventName for every record; wins over event_name_field.",
    ),
    th.Property(
        "timestamp_field",
        th.StringType,
        default="timestamp",
        description="Source field for the event time (ISO 8601 or date-time; naive = UTC).",
    ),
    th.Property(
        "properties_field",
        th.StringType,
        default="properties",
        description=(
            "If a record has an object in this field, it becomes the properties; "
            "otherwise every field not mapped above (except _sdc_*) does."
        ),
    ),
    th.Property(
        "property_fields",
        th.ArrayType(th.StringType),
        description=(
            "Only these source fields become properties (when there is no properties "
            "object). Default: every field not mapped above."
        ),
    ),
    th.Property(
        "idempotency_key_template",
        th.StringType,
        description=(
            "str.format template over the record's fields plus 'stream', e.g. "
            "'sync_{id}'. Default key: '{stream}:{key property values joined by :}'."
        ),
    ),
)


class TargetMonk(Target):
    """Singer target for Monk's batch events API."""

    name = "target-monk"
    default_sink_class = MonkSink
    message_reader_class = SingerBytesReader

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType,
            required=True,
            secret=True,
            description="Monk API key (Bearer), with the usage:write scope.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default="https://events-api.monk.com",
            description="Monk events host; batches go to {api_url}/v1/events/batch.",
        ),
        th.Property(
            "batch_size_rows",
            th.IntegerType(minimum=1, maximum=MAX_BATCH_EVENTS),
            default=5000,
            description="Events per request, 1 to 10,000 (Monk's limit).",
        ),
        th.Property(
            "max_batch_bytes",
            th.IntegerType(minimum=1000),
            default=DEFAULT_MAX_BATCH_BYTES,
            description=(
                "Largest request body in bytes; a batch whose JSON would be larger is "
                "sent in parts. A safety margin: Monk publishes no byte limit."
            ),
        ),
        *_MAPPING_SETTINGS,
        th.Property(
            "stream_overrides",
            th.ObjectType(additional_properties=_MAPPING_SETTINGS),
            default={},
            description="Stream name -> any of the mapping settings, for that stream only.",
        ),
        th.Property(
            "request_timeout_seconds",
            th.NumberType(exclusive_minimum=0),
            default=60,
            description="Timeout of one request, in seconds.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0, maximum=20),
            default=5,
            description="Retries of one batch on 429, 5xx, timeouts and connection errors.",
        ),
        th.Property(
            "retry_backoff_seconds",
            th.NumberType(minimum=0),
            default=1,
            description="First retry wait; each next one doubles (1, 2, 4, 8, 16 s), jittered.",
        ),
        th.Property(
            "max_in_flight",
            th.IntegerType(minimum=1, maximum=32),
            default=4,
            description="Batches posted at once while input keeps being read.",
        ),
        th.Property(
            "validate_records",
            th.BooleanType,
            default=False,
            description=(
                "Also run the SDK's per-record JSON Schema validation. Off by default: "
                "every record is checked against Monk's rules anyway."
            ),
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: t.Any = None,
    ) -> None:
        """Set up the Monk client and the delivery pool."""
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        self.max_parallelism = 1  # sinks drain in turn; delivery itself is concurrent
        self.client = MonkClient(
            self.config.get("api_url", "https://events-api.monk.com"),
            self.config.get("api_key", ""),
            timeout=float(self.config.get("request_timeout_seconds", 60)),
            max_retries=int(self.config.get("max_retries", 5)),
            backoff_seconds=float(self.config.get("retry_backoff_seconds", 1)),
        )
        self.delivery = Delivery(
            self._send,
            self._write_state_line,
            max_in_flight=int(self.config.get("max_in_flight", 4)),
        )
        self._max_batch_bytes = int(self.config.get("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES))
        self._next_age_check = 0.0
        # Records skip the SDK's generic per-record steps unless a setting needs them.
        self.fast_path = not any(
            self.config.get(name)
            for name in ("validate_records", "stream_maps", "flattening_enabled")
        )

    # Delivery callbacks (worker threads).

    def _send(self, batch: Batch) -> None:
        label = f"batch #{batch.number} ({len(batch.events)} events of {batch.label})"
        bodies = encode_in_parts(batch.events, self._max_batch_bytes)
        for part, body in enumerate(bodies, 1):
            part_label = label if len(bodies) == 1 else f"{label}, part {part}/{len(bodies)}"
            receipt = self.client.send_batch(body, part_label)
            self.logger.info(
                "Monk accepted %s (requestId %s, %d attempt(s))",
                part_label,
                receipt.request_id,
                receipt.attempts,
            )

    @staticmethod
    def _write_state_line(state: dict) -> None:
        """Write the bare state value, exactly as received (Decimals as numbers)."""
        sys.stdout.write(_STATE_ENCODER.encode(state).decode() + "\n")
        sys.stdout.flush()

    # Singer message handling.

    def _process_record_message(self, message_dict: dict) -> None:
        """Map the record into its sink's batch; send the batch once it is full.

        After a full batch goes out, partial batches of other streams that hold back
        the newest STATE go out too, so checkpoints keep moving.
        """
        sink = self._sinks_active.get(message_dict.get("stream"))  # type: ignore[arg-type]
        record = message_dict.get("record")
        if self.fast_path and sink is not None and type(record) is dict:
            if sink.add_record(record):  # type: ignore[attr-defined]
                self.drain_one(sink)
                self._send_batches_holding_back_state()
            if time.monotonic() >= self._next_age_check:
                self._next_age_check = time.monotonic() + 1
                self._handle_max_record_age()
            return
        batches_before = self.delivery.stats.batches
        super()._process_record_message(message_dict)
        if self.delivery.stats.batches != batches_before:
            self._send_batches_holding_back_state()

    def _send_batches_holding_back_state(self) -> None:
        for holder in self.delivery.holders_blocking_states():
            self.drain_one(holder)  # type: ignore[arg-type]

    def _process_state_message(self, message_dict: dict) -> None:
        """Queue the STATE; it is written once every earlier record is accepted."""
        self._assert_line_requires(message_dict, requires={"value"})
        self.delivery.state_received(message_dict["value"])

    def process_endofpipe(self) -> None:
        """Send what is buffered, wait for every batch, write the last STATE."""
        super().process_endofpipe()
        self.delivery.finish()
        stats = self.delivery.stats
        self.logger.info(
            "target-monk delivered %d events in %d batches",
            stats.events_accepted,
            stats.batches,
        )

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Stop at once; never let a STATE out past an unaccepted record.

        singer-sdk's own handler drains and exits 0, which loses in-flight events.
        """
        with self.delivery._lock:
            delivered = self.delivery.all_accepted
            self.logger.error(
                "Received signal %d: stopping. %s",
                signum,
                "Every record received was accepted by Monk."
                if delivered
                else "Some records were not yet accepted by Monk; no STATE past them "
                "was written, so the next run sends them again.",
            )
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0 if delivered else 1)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        file_input: t.IO[str] | None = None,
    ) -> None:
        """Run the target; turn every known failure into one clear line and exit 1."""
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, file_input=file_input
            )
        except _FATAL as exc:
            cls.logger.error("target-monk failed: %s", exc)
            sys.exit(1)


_FATAL = (
    InvalidRecordError,
    MappingConfigError,
    DeliveryFailed,
    MonkError,
    InvalidInputLine,
    RecordsWithoutSchemaException,
)
_STATE_ENCODER = msgspec.json.Encoder(decimal_format="number")
