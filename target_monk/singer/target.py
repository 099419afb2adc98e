"""target-monk: deliver any Singer tap's records to Monk as billed usage events.

This module is singer-sdk's adapter and nothing more: the settings schema, building
the `Run` from `Settings`, singer-sdk's hooks (where the fast path and the SDK's
path fork, in `_process_records`), and the exit code (`cli.py` exits). How a record
and a STATE travel is in docs/architecture.md; the SDK internals used are in
sdk_internals.py.
"""

from __future__ import annotations

import copy
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

from target_monk.errors import ConfigError, InputError, InvalidRecordError, TargetMonkError
from target_monk.run.run import Run
from target_monk.settings import ENV_PREFIX, SCHEMA, Settings, config_from_env
from target_monk.singer.batch_files import batch_records
from target_monk.singer.reader import SingerBytesReader
from target_monk.singer.sinks import MonkSink

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
    exit_process: t.Callable[[int], t.NoReturn] = staticmethod(sys.exit)
    """How a signal ends the process (`Run.on_signal`); `cli.py` sets its `exit_now`."""

    def __init__(
        self,
        *,
        config: dict[str, t.Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: SingerBytesReader | None = None,
    ) -> None:
        """Read the settings once, build the run, connect the reader's hooks."""
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
            raise ConfigError(_env_error(exc)) from None
        self.max_parallelism = 1  # sinks drain in turn; delivery itself is concurrent
        self.settings = Settings.from_config(self.config, self.sdk_settings(), os.environ)
        self.run = Run(self.settings)
        self._sink_class = MonkSink.bound_to(self.run)
        reader = t.cast("SingerBytesReader", self.message_reader)
        reader.on_records = self._process_records
        reader.on_tick = self.run.tick
        reader.tick_seconds = min(1.0, self.settings.flush_interval_seconds / 4)
        reader.on_failure = self._on_failure

    @classmethod
    def sdk_settings(cls) -> set[str]:
        """The names of the settings singer-sdk adds to target-monk's own."""
        schema = copy.deepcopy(SCHEMA)
        cls.append_builtin_config(schema)
        return set(schema["properties"]) - set(SCHEMA["properties"])

    @override
    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Sinks bound to this target's run."""
        return self._sink_class

    # Records: the one fork between the fast path and the SDK's path.

    def _process_records(self, stream: str, records: list[dict[str, t.Any]]) -> None:
        """A run of one stream's records (RECORD lines, or rows of BATCH files). The
        fast path hands them to the run at once; when a setting needs singer-sdk's
        per-record steps (`Settings.sdk_path_settings`), each takes them first."""
        if self.settings.sdk_path:
            for record in records:
                self._process_record_message({"type": "RECORD", "stream": stream, "record": record})
            return
        sink = self._sink_of(stream)
        self.run.add_records(sink.buffer, records)
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
        the records set aside go to the run, outside the steps' error handling."""
        self._assert_line_requires(message_dict, requires={"stream", "record"})
        if type(message_dict["record"]) is not dict or type(message_dict["stream"]) is not str:
            msg = f"RECORD whose stream is not a string or record not an object: {message_dict!r}"
            raise InputError(msg[:300])
        if message_dict["record"].get("_sdc_deleted_at") is not None:
            # A delete skips the SDK's steps (they would drop _sdc_deleted_at): the
            # run sets it aside, as on the fast path.
            self.run.add_records(
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
            self.run.add_records(buffer, [record])
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
        self.run.invalid_record(invalid, record)

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
        self.run.state_received(message_dict["value"])

    @override
    def _handle_max_record_age(self) -> None:
        """Nothing: the run sends partial batches after flush_interval_seconds
        (singer-sdk would drain every sink every 5 minutes, inside a record's steps)."""

    # Ending a run.

    @override
    def process_endofpipe(self) -> None:
        """singer-sdk drains every sink (`MonkSink.process_batch`); then the run
        waits for every batch, writes the last STATE and the summary."""
        try:
            super().process_endofpipe()
            self.run.finish()
        except TargetMonkError as exc:
            self.run.fail(exc)
            raise

    def _on_failure(self, error: Exception) -> None:
        """Reading stopped on `error`: a known failure ends the run the one way (then
        propagates); anything else is a bug, and goes on with its traceback."""
        if isinstance(error, TargetMonkError):
            self.run.fail(error)

    @override
    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> _ConfigInput:
        """`--config`: a file that is missing or not JSON fails in one line.

        Raises:
            ConfigError: naming the file and why.
        """
        try:
            return super().cb_config(ctx, param, value)
        except (OSError, ValueError) as exc:
            msg = f"cannot read --config {' '.join(value)}: {exc}"
            raise ConfigError(msg) from None

    @override
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: t.IO[str] | None = None,
    ) -> int:
        """singer-sdk's `Target.invoke`, returning the exit code (`cli.py` exits):
        0 for a finished run or --about; 1 for a failure `Run.fail` reported.

        Raises:
            TargetMonkError: settings refused, or the ledger cannot be opened (nothing
                was read).
        """
        if about:
            cls.print_about(about_format)
            return 0
        cls.print_version(print_fn=cls.logger.info)
        config = config or _ConfigInput()
        target = cls(config=config.config, parse_env_config=config.parse_env)
        try:
            target.listen(file_input)
        except TargetMonkError:
            return 1
        return 0

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop at once (`Run.on_signal`), ending the process with
        `exit_process`. singer-sdk's own handler drains and exits 0, which loses
        in-flight events."""
        run: Run | None = getattr(self, "run", None)
        if run is None:  # still starting: nothing was read, nothing can be lost
            self.logger.error("Received signal %d while starting: stopping.", signum)
            self.exit_process(0)
        run.on_signal(signum, self.exit_process)


def _before_schema(stream: str) -> str:
    return (
        f"A message for stream '{stream}' arrived before its SCHEMA message: "
        "the tap broke the Singer spec"
    )


def _env_error(error: ValueError) -> str:
    """Which TARGET_MONK_* variable singer-sdk could not read as an integer or as JSON
    (its value is not shown: it may be a secret)."""
    schema = copy.deepcopy(SCHEMA)
    TargetMonk.append_builtin_config(schema)
    try:
        config_from_env(os.environ, schema)
    except ConfigError as exc:
        return str(exc)
    return f"a {ENV_PREFIX}* variable could not be read: {error}"


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
