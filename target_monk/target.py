"""target-monk: deliver any Singer tap's records to Monk as billed usage events.

This module is the wiring: the settings, the parts built from them, and singer-sdk's
hooks. How a record and a STATE travel, and where the fast path and the SDK's path
fork, is in docs/architecture.md; the SDK internals used are in sdk_internals.py.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import sys
import typing as t
from pathlib import Path

import msgspec
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import (
    ConfigValidationError,
    InvalidRecord,
    MapExpressionError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.helpers._batch import BatchConfig
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.singerlib.exceptions import InvalidInputLine
from typing_extensions import override

from target_monk.batch_files import BatchFileError, batch_records
from target_monk.client import (
    MAX_RETRY_AFTER_SECONDS,
    DryRunClient,
    MonkClient,
    MonkError,
    check_api_url,
)
from target_monk.delivery import Delivery, DeliveryFailed
from target_monk.mapping import InvalidRecordError, KeySpace, MappingConfigError, MappingSettings
from target_monk.outputs import DeadLetters, JsonLinesFile, StateLines, encode_json
from target_monk.reader import SingerBytesReader
from target_monk.report import RunReport
from target_monk.sender import Sender
from target_monk.sinks import MonkSink

if t.TYPE_CHECKING:
    from pathlib import PurePath
    from types import FrameType

MAX_BATCH_EVENTS = 10_000
"""Monk's limit of events per request."""
DEFAULT_API_URL = "https://events-api.monk.com"
BOUND_CHECK_RECORDS = 1000
"""Buffers may pass max_buffered_events by at most this many records."""
SDK_PATH_SETTINGS = ("validate_records", "stream_maps", "flattening_enabled")
"""Settings that need singer-sdk's per-record steps: with none set, the fast path."""

_MAPPING_SETTINGS = th.PropertiesList(
    th.Property(
        "customer_id_field",
        th.StringType,
        default=MappingSettings.customer_id_field,
        description="Source field for customerId (Monk's customer UUID).",
    ),
    th.Property(
        "external_customer_id_field",
        th.StringType,
        default=MappingSettings.external_customer_id_field,
        description="Source field for externalCustomerId, used when customerId is empty.",
    ),
    th.Property(
        "event_name_field",
        th.StringType,
        default=MappingSettings.event_name_field,
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
        default=MappingSettings.timestamp_field,
        description="Source field for the event time (ISO 8601 or date-time; naive = UTC).",
    ),
    th.Property(
        "properties_field",
        th.StringType,
        default=MappingSettings.properties_field,
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
    capabilities: t.ClassVar[list[t.Any]] = [*Target.capabilities, PluginCapabilities.BATCH]
    exit_on_failure: t.ClassVar[bool] = False
    """Set by `invoke` (the command line): a failure exits 1 after `fail()`."""

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
            default=DEFAULT_API_URL,
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
            default=5_000_000,
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
            "max_retry_wait_seconds",
            th.NumberType(minimum=0),
            default=60,
            description=(
                "Longest wait before one retry (Monk's Retry-After is honoured up to "
                f"{MAX_RETRY_AFTER_SECONDS:g} s)."
            ),
        ),
        th.Property(
            "flush_interval_seconds",
            th.NumberType(exclusive_minimum=0),
            default=60,
            description=(
                "A partial batch is sent, and the STATE behind it written, at most this "
                "long after its first record arrived, also while the tap is silent."
            ),
        ),
        th.Property(
            "max_buffered_events",
            th.IntegerType(minimum=1),
            default=50_000,
            description=(
                "Events buffered in all streams' partial batches at most; past it the "
                "largest partial batches are sent. Bounds memory whatever the number "
                "of streams."
            ),
        ),
        th.Property(
            "max_in_flight",
            th.IntegerType(minimum=1, maximum=32),
            default=4,
            description="Batches posted at once while input keeps being read.",
        ),
        th.Property(
            "on_invalid_record",
            th.StringType(allowed_values=["fail", "dead_letter"]),
            default="fail",
            description=(
                "fail: an invalid record fails the run before its batch is sent. "
                "dead_letter: it goes to dead_letter_path and delivery goes on; a batch "
                "Monk rejects (400/413/422) is split until the rejected events are found."
            ),
        ),
        th.Property(
            "dead_letter_path",
            th.StringType,
            default="target-monk-dead-letter.jsonl",
            description="JSON Lines file for dead-lettered records and events (appended).",
        ),
        th.Property(
            "fail_on_dead_letter",
            th.BooleanType,
            default=False,
            description="Exit non-zero at the end of a run that dead-lettered anything.",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description=(
                "Map and check every record and write the request bodies to dry_run_path; "
                "send nothing and write no STATE (the bookmark never moves)."
            ),
        ),
        th.Property(
            "dry_run_path",
            th.StringType,
            default="target-monk-dry-run.jsonl",
            description="JSON Lines file for dry-run request bodies, one body per line.",
        ),
        th.Property(
            "summary_path",
            th.StringType,
            description=(
                "If set, write a receipt here: per customer and event name, the events "
                "and the sum of each numeric property delivered in this run."
            ),
        ),
        th.Property(
            "progress_every_batches",
            th.IntegerType(minimum=1),
            default=10,
            description="Log a progress line every this many accepted requests.",
        ),
        th.Property(
            "allow_insecure_http",
            th.BooleanType,
            default=False,
            description="Allow a plain http api_url to a host other than this machine.",
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
        config: dict[str, t.Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: SingerBytesReader | None = None,
    ) -> None:
        """Build the parts: client, sender, delivery, STATE output, reader hooks."""
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        self.max_parallelism = 1  # sinks drain in turn; delivery itself is concurrent
        settings = {**SETTING_DEFAULTS, **{k: v for k, v in self.config.items() if v is not None}}
        try:
            check_api_url(settings["api_url"], settings["allow_insecure_http"])
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from None
        if settings.get("load_method") == "overwrite":
            msg = (
                "load_method 'overwrite' cannot work with Monk: events it accepted cannot "
                "be deleted. Use append-only (the default) or upsert: both deliver by "
                "idempotency key, and Monk keeps the last write per key."
            )
            raise ConfigValidationError(msg, errors=[msg])
        self.dry_run = bool(settings["dry_run"])
        self.request_timeout = float(settings["request_timeout_seconds"])
        self.client: MonkClient | DryRunClient = (
            DryRunClient(JsonLinesFile(settings["dry_run_path"]))
            if self.dry_run
            else MonkClient(
                settings["api_url"],
                settings.get("api_key", ""),
                timeout=self.request_timeout,
                max_retries=int(settings["max_retries"]),
                backoff_seconds=float(settings["retry_backoff_seconds"]),
                max_wait_seconds=float(settings["max_retry_wait_seconds"]),
            )
        )
        self.report = RunReport(keep_receipt=bool(settings.get("summary_path")))
        self.dead_letters = (
            DeadLetters(JsonLinesFile(settings["dead_letter_path"]), self.report)
            if settings["on_invalid_record"] == "dead_letter"
            else None
        )
        self.state_lines = StateLines(write=not self.dry_run)
        sender = Sender(
            self.client,
            self.report,
            self.dead_letters,
            max_batch_bytes=int(settings["max_batch_bytes"]),
            progress_every=int(settings["progress_every_batches"]),
        )
        self.delivery = Delivery(
            sender, self.state_lines.write, max_in_flight=int(settings["max_in_flight"])
        )
        self.key_space = KeySpace(settings["stream_overrides"])
        self._flush_interval = float(settings["flush_interval_seconds"])
        self._max_buffered = int(settings["max_buffered_events"])
        self._unchecked_records = 0
        self._summary_logged = False
        reader = t.cast("SingerBytesReader", self.message_reader)
        reader.on_tick = self._tick
        reader.tick_seconds = min(1.0, self._flush_interval / 4)
        # The fork of the two record paths (docs/architecture.md): unless a setting
        # needs the SDK's per-record steps, runs of records skip them.
        self.fast_path = not any(settings.get(name) for name in SDK_PATH_SETTINGS)
        if self.fast_path:
            reader.on_records = self._process_records
        reader.on_failure = self._on_failure
        # Everything built so far (modules, the SDK, the config) lives for the whole
        # run: keep the garbage collector from re-scanning it for every batch.
        gc.freeze()

    # The fast path, and what both paths share.

    def _process_records(self, stream: str, records: list[dict[str, t.Any]]) -> None:
        """The fast path: a run of one stream's records joins its sink's batch; a full
        batch is sent, and with it the partial batches that hold back the newest STATE.
        """
        if stream not in self._sinks_active:
            self._assert_sink_exists(stream)  # raises: no SCHEMA yet
        sink = t.cast("MonkSink", self._sinks_active[stream])
        now = dt.datetime.now(dt.UTC)
        done = 0
        while done < len(records):
            done = sink.add_records(records, done, now)
            if sink.is_full:
                self.drain_one(sink)
                self._send_batches_holding_back_state()
        self._bound_buffers(len(records))
        self._handle_max_record_age()

    def _send_batches_holding_back_state(self) -> None:
        """Send the partial batches whose records keep the newest STATE unwritten, so
        checkpoints keep moving during long backfills."""
        for holder in self.delivery.holders_blocking_states():
            self.drain_one(t.cast("MonkSink", holder))

    def _bound_buffers(self, records_added: int) -> None:
        """Past max_buffered_events in all partial batches, send the largest. Checked
        every BOUND_CHECK_RECORDS records (summing every stream's buffer for each
        record would cost as much as mapping it when streams interleave)."""
        self._unchecked_records += records_added
        if self._unchecked_records < BOUND_CHECK_RECORDS:
            return
        self._unchecked_records = 0
        for holder in self.delivery.largest_holders(above=self._max_buffered):
            self.drain_one(t.cast("MonkSink", holder))

    def _tick(self) -> None:
        """Called by the reader at least every tick_seconds, also while the input is
        silent: fail at once if a batch failed; send partial batches older than
        flush_interval_seconds (and what holds back the newest STATE with them)."""
        self.delivery.raise_if_failed()
        old = self.delivery.holders_older_than(self._flush_interval)
        for holder in old:
            self.drain_one(t.cast("MonkSink", holder))
        if old:
            self._send_batches_holding_back_state()

    # singer-sdk's message hooks.

    @override
    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        """The SDK's path, plus: a RECORD that is not an object fails the run; a record
        the SDK's steps refuse is reported like any invalid record; partial batches
        that hold back the newest STATE follow a full batch out."""
        self._assert_line_requires(message_dict, requires={"stream", "record"})
        if type(message_dict["record"]) is not dict or type(message_dict["stream"]) is not str:
            msg = f"RECORD whose stream is not a string or record not an object: {message_dict!r}"
            raise InvalidInputLine(msg[:300])
        batches_before = self.delivery.batches_submitted
        try:
            super()._process_record_message(message_dict)
        except (InvalidRecordError, MappingConfigError):
            raise  # target-monk's own: already one line, already dead-lettered if asked
        except _SDK_RECORD_ERRORS as exc:
            self._sdk_record_error(message_dict, exc)
        if self.delivery.batches_submitted != batches_before:
            self._send_batches_holding_back_state()
        self._bound_buffers(1)

    def _sdk_record_error(self, message_dict: dict[str, t.Any], error: Exception) -> None:
        """A record the SDK's steps refused (JSON Schema validation, a missing key
        property, a stream map expression): the same as a record mapping refuses,
        dead-lettered or failing the run in one line."""
        stream, record = message_dict["stream"], message_dict["record"]
        sink = self._sinks_active.get(stream)
        key = sink.record_key(record) if isinstance(sink, MonkSink) else "(unknown)"
        path = getattr(error.__cause__, "absolute_path", ())  # jsonschema's, if any
        missing = [k for k in getattr(sink, "key_properties", ()) if k not in record]
        field = ".".join(map(str, path)) or ",".join(missing) or "record"
        reason = getattr(error, "error_message", None) or str(error).splitlines()[0]
        invalid = InvalidRecordError(stream, key, field, f"{type(error).__name__}: {reason}")
        if self.dead_letters is None:
            raise invalid from None
        self.dead_letters.invalid(invalid, record)

    @override
    def _process_batch_message(self, message_dict: dict[str, t.Any]) -> None:
        """BATCH: the files' records take exactly the path RECORD lines take (checks,
        mapping, dead letters, batching, STATE gating), in runs. singer-sdk's own
        `Sink.process_batch_files` would hand each whole file to `process_batch`."""
        self._assert_line_requires(message_dict, requires={"stream", "encoding", "manifest"})
        stream = message_dict["stream"]
        if stream not in self.mapper.stream_maps:
            self._assert_sink_exists(stream)
        raw_config = self.config.get("batch_config")
        storage = BatchConfig.from_dict(raw_config).storage if raw_config else None
        for records in batch_records(message_dict, storage):
            if self.fast_path:
                self._process_records(stream, records)
                continue
            for record in records:
                self._process_record_message({"type": "RECORD", "stream": stream, "record": record})

    @override
    def _process_activate_version_message(self, message_dict: dict[str, t.Any]) -> None:
        """ACTIVATE_VERSION (full-table taps): nothing to do. Monk keeps every event it
        accepted; rows missing from a new table version are not un-billed."""
        self._assert_line_requires(message_dict, requires={"stream", "version"})
        stream = message_dict["stream"]
        if stream not in self.mapper.stream_maps:
            self._assert_sink_exists(stream)
        self.logger.info(
            "ACTIVATE_VERSION %s for stream '%s': nothing to do (Monk keeps every event delivered)",
            message_dict["version"],
            stream,
        )

    @override
    def _assert_sink_exists(self, stream_name: str) -> None:
        """Fail on a message for a stream with no SCHEMA yet, in target-monk's words."""
        if not self.sink_exists(stream_name):
            msg = (
                f"A message for stream '{stream_name}' arrived before its SCHEMA message: "
                "the tap broke the Singer spec"
            )
            raise RecordsWithoutSchemaException(msg)

    @override
    def _process_state_message(self, message_dict: dict[str, t.Any]) -> None:
        """Queue the STATE; it is written once every earlier record is accepted. (The
        SDK's `_latest_state` is never set, so the SDK's `drain_all` writes no STATE.)"""
        self._assert_line_requires(message_dict, requires={"value"})
        self.delivery.state_received(message_dict["value"])

    @override
    def process_endofpipe(self) -> None:
        """Send what is buffered, wait for every batch, write the last STATE."""
        try:
            super().process_endofpipe()
            self.delivery.finish()
            self._finish_report()
        except _FATAL as exc:
            self._on_failure(exc)  # exits, from the command line
            raise

    def _on_failure(self, error: Exception) -> None:
        """Reading (or the end of input) stopped on `error`: run from the command line,
        a known failure ends the run the one way; anything else is a bug, and goes on
        with its traceback. In-process (tests, a library user) every error propagates."""
        if self.exit_on_failure and isinstance(error, _FATAL):
            self.fail(error)

    @override
    @classmethod
    def invoke(
        cls, *, about: bool = False, about_format: str | None = None, **kwargs: t.Any
    ) -> None:
        """The command line (singer-sdk's invoke): failures end the run with `fail()`."""
        cls.exit_on_failure = True
        super().invoke(about=about, about_format=about_format, **kwargs)

    # Ending a run.

    def log_summary(self) -> dict[str, t.Any]:
        """Log what the run did, per stream and as one JSON line; return it."""
        records_read: dict[str, int] = {}
        for sink in [*self._sinks_active.values(), *self._sinks_to_clear]:
            records_read[sink.stream_name] = (
                records_read.get(sink.stream_name, 0) + sink._total_records_read
            )
        self._summary_logged = True
        return self.report.log_summary(self.logger, records_read, self.key_space.warnings())

    def _finish_report(self) -> None:
        """Log the summary; write the receipt; say what was dead-lettered, failing the
        run if asked to."""
        summary = self.log_summary()
        if isinstance(self.client, DryRunClient):
            self.logger.warning(
                "Dry run: nothing was sent and no STATE was written; %d request bodies are in %s",
                self.client.bodies.count,
                self.client.bodies.path,
            )
        if self.config.get("summary_path"):
            receipt = encode_json({"run": summary, "usage": self.report.receipt()})
            Path(self.config["summary_path"]).write_bytes(msgspec.json.format(receipt) + b"\n")
        if summary["dead_lettered"] and self.dead_letters is not None:
            self.logger.warning(
                "%d records or events were dead-lettered to %s (see the README, "
                "'When things go wrong')",
                summary["dead_lettered"],
                self.dead_letters.file.path,
            )
            if self.config.get("fail_on_dead_letter"):
                msg = f"{summary['dead_lettered']} dead-lettered (fail_on_dead_letter is on)"
                raise DeadLettersWritten(msg)

    def fail(self, error: BaseException) -> t.NoReturn:
        """The one way a run fails: take no more input (the caller has stopped
        reading), retry nothing, let the batches already handed to delivery make at
        most one attempt each and wait for them (at most 2 x request_timeout_seconds
        + 5 s: max_in_flight being posted, then the one waiting for a sender), write no
        STATE from then on, log the summary of what Monk accepted, then one
        `target-monk failed:` line; exit 1."""
        self.client.stop()
        self.delivery.wait_for_running(timeout=2 * self.request_timeout + 5)
        self.state_lines.hold()
        self.delivery.halt()
        if not self._summary_logged:
            self.log_summary()
        self.logger.error("target-monk failed: %s", error)
        _exit_now(1)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop at once; never let a STATE out past an unaccepted
        record, nor half a STATE line (see `StateLines`). singer-sdk's own handler
        drains and exits 0, which loses in-flight events."""
        if self.state_lines.stop_after_line(lambda: self._stop_on_signal(signum)):
            return
        self.state_lines.hold()
        self._stop_on_signal(signum)

    def _stop_on_signal(self, signum: int) -> t.NoReturn:
        delivered = self.delivery.halt()
        self.logger.error(
            "Received signal %d: stopping. %s",
            signum,
            "Every record received was accepted by Monk."
            if delivered
            else "Some records were not yet accepted by Monk; no STATE past them "
            "was written, so the next run sends them again.",
        )
        _exit_now(0 if delivered else 1)


SETTING_DEFAULTS: dict[str, t.Any] = {
    name: spec["default"]
    for name, spec in TargetMonk.config_jsonschema["properties"].items()
    if "default" in spec
}
"""Every setting's default, from the schema above: the one place defaults live."""


def _exit_now(code: int) -> t.NoReturn:
    """Exit at once, after flushing what was written: no thread may write after this
    (interpreter shutdown would wait for sender threads, which may log and write)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class DeadLettersWritten(Exception):
    """The run dead-lettered records and fail_on_dead_letter is on."""


_SDK_RECORD_ERRORS = (
    InvalidRecord,
    MissingKeyPropertiesError,
    MapExpressionError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
)
"""What singer-sdk's per-record steps raise for one bad record: its own errors, and
what a stream map expression raises as is (1 / 0, a wrong type, a missing index)."""

_FATAL = (
    DeadLettersWritten,
    InvalidRecordError,
    MappingConfigError,
    DeliveryFailed,
    MonkError,
    InvalidInputLine,
    RecordsWithoutSchemaException,
    BatchFileError,
)
"""Failures `fail()` reports in one line; anything else is a bug, with its traceback."""
