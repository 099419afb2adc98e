"""target-monk: deliver any Singer tap's records to Monk as billed usage events.

This module is singer-sdk's adapter and nothing more: the settings schema, building
the `Pipeline` from `Settings`, singer-sdk's hooks (where the fast path and the SDK's
path fork, in `_process_records`), and the process exit. How a record and a STATE
travel is in docs/architecture.md; the SDK internals used are in sdk_internals.py.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import sys
import typing as t

from singer_sdk import Target
from singer_sdk.exceptions import (
    ConfigValidationError,
    InvalidRecord,
    MapExpressionError,
    MissingKeyPropertiesError,
)
from singer_sdk.helpers._batch import BatchConfig
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.plugin_base import _ConfigInput
from typing_extensions import override

from target_monk.batch_files import batch_records
from target_monk.errors import ConfigError, InputError, InvalidRecordError, TargetMonkError
from target_monk.pipeline import Pipeline
from target_monk.reader import SingerBytesReader
from target_monk.settings import SCHEMA, Settings
from target_monk.sinks import MonkSink

if t.TYPE_CHECKING:
    from pathlib import PurePath
    from types import FrameType

    import click
    from singer_sdk.sinks import Sink


class TargetMonk(Target):
    """Singer target for Monk's batch events API."""

    name = "target-monk"
    default_sink_class = MonkSink
    message_reader_class = SingerBytesReader
    capabilities: t.ClassVar[list[t.Any]] = [*Target.capabilities, PluginCapabilities.BATCH]
    config_jsonschema = copy.deepcopy(SCHEMA)  # singer-sdk adds its built-in settings here

    def __init__(
        self,
        *,
        config: dict[str, t.Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: SingerBytesReader | None = None,
    ) -> None:
        """Read the settings once, build the pipeline, connect the reader's hooks."""
        try:
            super().__init__(
                config=config,
                parse_env_config=parse_env_config,
                validate_config=validate_config,
                setup_mapper=setup_mapper,
                message_reader=message_reader,
            )
        except ConfigValidationError as exc:  # the settings' JSON Schema
            errors = "; ".join(exc.errors)
            secret = str(getattr(self, "_config", {}).get("api_key") or "")
            if len(secret) > 3:  # a key of the wrong type is quoted by jsonschema
                errors = errors.replace(secret, "***")
            raise ConfigError(f"invalid settings: {errors}") from None
        except ValueError as exc:  # singer-sdk's reading of TARGET_MONK_* variables
            if not parse_env_config:
                raise
            raise ConfigError(_env_error(self._env_var_prefix, exc)) from None
        self.max_parallelism = 1  # sinks drain in turn; delivery itself is concurrent
        self.settings = Settings.from_config(self.config, self.sdk_settings(), os.environ)
        self.pipeline = Pipeline(self.settings)
        self._sink_class = MonkSink.bound_to(self.pipeline)
        reader = t.cast("SingerBytesReader", self.message_reader)
        reader.on_records = self._process_records
        reader.on_tick = self.pipeline.tick
        reader.tick_seconds = min(1.0, self.settings.flush_interval_seconds / 4)
        reader.on_failure = self._on_failure
        # Everything built so far (modules, the SDK, the config) lives for the whole
        # run: keep the garbage collector from re-scanning it for every batch.
        gc.freeze()

    @classmethod
    def sdk_settings(cls) -> set[str]:
        """The names of the settings singer-sdk adds to target-monk's own."""
        schema = copy.deepcopy(SCHEMA)
        cls.append_builtin_config(schema)
        return set(schema["properties"]) - set(SCHEMA["properties"])

    @override
    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Sinks bound to this target's pipeline."""
        return self._sink_class

    # Records: the one fork between the fast path and the SDK's path.

    def _process_records(self, stream: str, records: list[dict[str, t.Any]]) -> None:
        """A run of one stream's records (RECORD lines, or rows of BATCH files). The
        fast path hands them to the pipeline at once; when a setting needs singer-sdk's
        per-record steps (`Settings.sdk_path_settings`), each takes them first."""
        if self.settings.sdk_path:
            for record in records:
                self._process_record_message({"type": "RECORD", "stream": stream, "record": record})
            return
        sink = self._sink_of(stream)
        self.pipeline.add_records(sink.buffer, records)
        sink.record_counter_metric.increment(len(records))

    def _sink_of(self, stream: str) -> MonkSink:
        """The stream's sink (on the SDK's path, its first stream map's if the stream
        is aliased).

        Raises:
            InputError: no SCHEMA for the stream yet.
        """
        sink = self._sinks_active.get(stream)
        if isinstance(sink, MonkSink):
            return sink
        for stream_map in self.mapper.stream_maps.get(stream, ()):
            sink = self._sinks_active.get(stream_map.stream_alias)
            if isinstance(sink, MonkSink):
                return sink
        raise InputError(_before_schema(stream))

    @override
    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        """One RECORD on the SDK's path: singer-sdk's steps (stream maps, flattening,
        validation, key check) end in `MonkSink.process_record`, which sets the record
        aside; a record those steps refuse is reported like any invalid record. Then
        the records set aside go to the pipeline, outside the steps' error handling."""
        self._assert_line_requires(message_dict, requires={"stream", "record"})
        if type(message_dict["record"]) is not dict or type(message_dict["stream"]) is not str:
            msg = f"RECORD whose stream is not a string or record not an object: {message_dict!r}"
            raise InputError(msg[:300])
        if message_dict["record"].get("_sdc_deleted_at") is not None:
            # A delete skips the SDK's steps (they would drop _sdc_deleted_at): the
            # pipeline sets it aside, as on the fast path.
            self.pipeline.add_records(
                self._sink_of(message_dict["stream"]).buffer, [message_dict["record"]]
            )
            return
        staged = self._sink_class.staged
        try:
            super()._process_record_message(message_dict)
        except _SDK_RECORD_ERRORS as exc:
            staged.clear()  # the record is refused whole, whatever of it was set aside
            self._sdk_record_error(message_dict, exc)
        for buffer, record in staged:
            self.pipeline.add_records(buffer, [record])
        staged.clear()

    def _sdk_record_error(self, message_dict: dict[str, t.Any], error: Exception) -> None:
        """A record the SDK's steps refused (JSON Schema validation, a missing key
        property, a stream map expression): the same as a record mapping refuses,
        dead-lettered or failing the run in one line."""
        stream, record = message_dict["stream"], message_dict["record"]
        sink = self._sinks_active.get(stream)
        key = sink.buffer.mapper.record_key(record) if isinstance(sink, MonkSink) else "(unknown)"
        path = getattr(error.__cause__, "absolute_path", ())  # jsonschema's, if any
        missing = [k for k in getattr(sink, "key_properties", ()) if k not in record]
        field = ".".join(map(str, path)) or ",".join(missing) or "record"
        reason = getattr(error, "error_message", None) or str(error).splitlines()[0]
        invalid = InvalidRecordError(stream, key, field, f"{type(error).__name__}: {reason}")
        self.pipeline.invalid_record(invalid, record)

    @override
    def _process_batch_message(self, message_dict: dict[str, t.Any]) -> None:
        """BATCH: the files' rows take exactly the path RECORD lines take, in runs.
        singer-sdk's own `Sink.process_batch_files` would hand each whole file to
        `process_batch`."""
        self._assert_line_requires(message_dict, requires={"stream", "encoding", "manifest"})
        stream = message_dict["stream"]
        if stream not in self.mapper.stream_maps:
            self._assert_sink_exists(stream)
        raw_config = self.settings.batch_config
        storage = BatchConfig.from_dict(dict(raw_config)).storage if raw_config else None
        for records in batch_records(message_dict, storage):
            self._process_records(stream, records)

    # Other messages.

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
            raise InputError(_before_schema(stream_name))

    @override
    def _process_state_message(self, message_dict: dict[str, t.Any]) -> None:
        """Queue the STATE; it is written once every earlier record is accepted. (The
        SDK's `_latest_state` is never set, so the SDK's `drain_all` writes no STATE.)"""
        self._assert_line_requires(message_dict, requires={"value"})
        self.pipeline.state_received(message_dict["value"])

    @override
    def _handle_max_record_age(self) -> None:
        """Nothing: the pipeline sends partial batches after flush_interval_seconds
        (singer-sdk would drain every sink every 5 minutes, inside a record's steps)."""

    # Ending a run.

    @override
    def process_endofpipe(self) -> None:
        """singer-sdk drains every sink (`MonkSink.process_batch`); then the pipeline
        waits for every batch, writes the last STATE and the summary."""
        try:
            super().process_endofpipe()
            self.pipeline.finish()
        except TargetMonkError as exc:
            self.pipeline.fail(exc)
            raise

    def _on_failure(self, error: Exception) -> None:
        """Reading stopped on `error`: a known failure ends the run the one way (then
        propagates); anything else is a bug, and goes on with its traceback."""
        if isinstance(error, TargetMonkError):
            self.pipeline.fail(error)

    @override
    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> _ConfigInput:
        """`--config`: a file that is missing or not JSON fails in one line."""
        try:
            return super().cb_config(ctx, param, value)
        except (OSError, ValueError) as exc:
            cls.logger.error(
                "target-monk failed: cannot read --config %s: %s", " ".join(value), exc
            )
            _exit_now(1)

    @override
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: t.IO[str] | None = None,
    ) -> None:
        """The command line, as singer-sdk's `Target.invoke` with its exits: refused
        settings fail in one line; a failure `Pipeline.fail` reported exits 1 without a
        traceback. A finished run exits 0 at once: during the interpreter's shutdown a
        SIGTERM would meet the default handler and end the process by the signal, with
        no line, after everything was delivered."""
        super(Target, cls).invoke(about=about, about_format=about_format)  # --about
        cls.print_version(print_fn=cls.logger.info)
        config = config or _ConfigInput()
        try:
            target = cls(config=config.config, parse_env_config=config.parse_env)
        except TargetMonkError as exc:  # settings refused, or the ledger cannot be opened
            cls.logger.error("target-monk failed: %s", exc)
            _exit_now(1)
        try:
            target.listen(file_input)
        except TargetMonkError:
            _exit_now(1)
        _exit_now(0)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop at once (`Pipeline.on_signal`). singer-sdk's own handler
        drains and exits 0, which loses in-flight events."""
        pipeline: Pipeline | None = getattr(self, "pipeline", None)
        if pipeline is None:  # still starting: nothing was read, nothing can be lost
            self.logger.error("Received signal %d while starting: stopping.", signum)
            _exit_now(0)
        pipeline.on_signal(signum, _exit_now)


def _before_schema(stream: str) -> str:
    return (
        f"A message for stream '{stream}' arrived before its SCHEMA message: "
        "the tap broke the Singer spec"
    )


def _env_error(prefix: str, error: ValueError) -> str:
    """Which TARGET_MONK_* variable singer-sdk could not read as an integer or as JSON
    (its value is not shown: it may be a secret)."""
    schema = copy.deepcopy(SCHEMA)
    TargetMonk.append_builtin_config(schema)
    for name, spec in schema["properties"].items():
        text, types = os.environ.get(prefix + name.upper()), str(spec.get("type"))
        read: t.Callable[[str], object] | None = (
            int
            if "integer" in types
            else json.loads
            if "object" in types or "array" in types
            else None
        )
        try:
            if text is not None and read is not None:
                read(text)
        except ValueError:
            kind = "an integer" if read is int else "JSON"
            return f"{prefix}{name.upper()} is not {kind}, as {name} must be"
    return f"a {prefix}* variable could not be read: {error}"


def _exit_now(code: int) -> t.NoReturn:
    """Exit at once, after flushing what was written: no thread may write after this
    (interpreter shutdown would wait for sender threads, which may log and write)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
what a stream map expression raises as is (1 / 0, a wrong type, a missing index).
Caught only around those steps: target-monk's own code runs outside them."""
