"""The singer-sdk internals target-monk relies on: private names, or public ones whose
behaviour it depends on, that an SDK upgrade may rename or change.

tests/unit/test_sdk_internals.py checks that each still exists and fails naming the one
that is gone. Each entry says what target-monk does with it; see also
docs/architecture.md.
"""

from __future__ import annotations

CLASS_MEMBERS: dict[str, str] = {
    # Target: message hooks overridden (each marked @override).
    "singer_sdk.Target._process_record_message": (
        "the SDK's per-record steps (stream maps, flattening, validation, key check), "
        "ending in Sink.process_record; target-monk catches record errors around it only "
        "and hands the records it passed to the pipeline after it"
    ),
    "singer_sdk.Target._process_state_message": (
        "overridden: STATE is queued behind its records and written by Delivery; the "
        "SDK's `_latest_state` is never set, so the SDK's drain_all writes no STATE"
    ),
    "singer_sdk.Target._process_batch_message": (
        "overridden: BATCH rows take the RECORD path instead of Sink.process_batch_files"
    ),
    "singer_sdk.Target._process_activate_version_message": (
        "overridden: logged, nothing to do; fails for a stream without SCHEMA"
    ),
    "singer_sdk.Target._assert_sink_exists": (
        "overridden for target-monk's wording; called on both record paths"
    ),
    "singer_sdk.Target._handle_termination": (
        "overridden: the SDK's handler drains and writes the latest STATE, losing "
        "in-flight events; target-monk stops at once, writing whole lines only"
    ),
    "singer_sdk.Target._handle_max_record_age": (
        "overridden to do nothing: the pipeline's flush_interval_seconds sends partial "
        "batches (the SDK would drain every sink every 5 minutes, inside a record's steps)"
    ),
    "singer_sdk.Target.get_sink_class": "overridden: sinks bound to the target's pipeline",
    "singer_sdk.Target.append_builtin_config": (
        "called to list the SDK's built-in settings, which Settings classifies by path"
    ),
    "singer_sdk.Target._assert_line_requires": "called to check message fields",
    "singer_sdk.Target.process_endofpipe": (
        "overridden: the SDK's drains every sink (process_batch), then the pipeline finishes"
    ),
    "singer_sdk.Target.listen": (
        "final in the SDK, so not overridden: the reader's on_failure hook and "
        "process_endofpipe route failures to Run.fail()"
    ),
    "singer_sdk.Target.invoke": (
        "overridden with its steps (PluginBase.invoke for --about, print_version, build, "
        "listen): refused settings fail in one line, a failure Run.fail() reported "
        "exits 1, a finished run exits 0 at once"
    ),
    "singer_sdk.plugin_base.PluginBase.cb_config": (
        "overridden: a --config file that is missing or not JSON fails in one line"
    ),
    "singer_sdk.plugin_base._ConfigInput": "what cb_config gives invoke (config, parse_env)",
    "singer_sdk.exceptions.ConfigValidationError": (
        "raised by the SDK's config validation; its `errors` become one ConfigError"
    ),
    # Sink.
    "singer_sdk.sinks.Sink._validate_and_parse": (
        "overridden: validation without the SDK's date-time parsing and traceback log"
    ),
    "singer_sdk.sinks.Sink.process_record": (
        "overridden: the SDK's path sets the record aside for the target"
    ),
    "singer_sdk.sinks.Sink.process_batch": (
        "overridden: called by the SDK's drain at the end; sends the stream's buffer"
    ),
    "singer_sdk.sinks.Sink._remove_sdc_metadata_from_record": (
        "not called, but why deletes skip the SDK's steps: it drops _sdc_deleted_at"
    ),
    "singer_sdk.sinks.Sink.is_full": (
        "overridden: never full to the SDK, so it never drains a sink inside a record's "
        "steps; the pipeline sends full batches on both paths"
    ),
    "singer_sdk.sinks.Sink.get_batch_processing_timer": (
        "overridden with a timer that logs nothing: the SDK's times the hand-over of a "
        "drained buffer; Sender logs batch_processing_time up to Monk's answer"
    ),
    "singer_sdk.metrics.Timer": "subclassed for that silent timer",
    "singer_sdk.metrics.METRICS_LOGGER_NAME": (
        "singer_sdk.metrics: report.log_metric logs target-monk's own metrics there, in "
        "the SDK's METRIC line format, so the SDK's metrics settings apply to them"
    ),
    # Reader.
    "singer_sdk.contrib.msgspec.MsgSpecReader.process_lines": (
        "overridden by SingerBytesReader: bytes in chunks, runs of records, ticks"
    ),
    "singer_sdk.contrib.msgspec.MsgSpecReader.deserialize_json": "overridden: own errors",
    "singer_sdk.contrib.msgspec.MsgSpecReader._process_unknown_message": (
        "overridden: an unknown message type fails the run in one line"
    ),
    "singer_sdk.contrib.msgspec.MsgSpecReader.assert_line_requires": (
        "overridden: a message without its fields fails in one line (InputError); the "
        "SDK's Target._assert_line_requires calls it"
    ),
    "singer_sdk.contrib.msgspec.decoder": (
        "the SDK's msgspec decoder (floats as Decimal): RECORD lines and BATCH rows"
    ),
    # BATCH files.
    "singer_sdk.helpers._batch.StorageTarget.split_url": "splits a manifest URL",
    "singer_sdk.helpers._batch.StorageTarget.from_url": "opens a manifest file's storage",
    "singer_sdk.helpers._batch.StorageTarget.open": "opens a BATCH file",
    "singer_sdk.helpers._batch.BaseBatchFileEncoding.from_dict": "reads a BATCH encoding",
    "singer_sdk.helpers._batch.BatchConfig.from_dict": "reads the batch_config setting",
    "singer_sdk.helpers.capabilities.PluginCapabilities.BATCH": "declared in --about",
}
"""Dotted paths to module members and class attributes."""

TARGET_ATTRIBUTES: dict[str, str] = {
    "_sinks_active": "the fast path finds a stream's sink (and its buffer) here",
    "_latest_state": "never set by target-monk (see _process_state_message)",
    "mapper": "mapper.stream_maps: is a stream known (SCHEMA seen) on the SDK's path",
    "message_reader": "the SingerBytesReader instance; its hooks are set at start-up",
    "_env_var_prefix": "TARGET_MONK_: names the variable singer-sdk could not read",
    "config": "the config singer-sdk read (files, env); read once into Settings",
}
"""Attributes of a Target instance."""

SINK_ATTRIBUTES: dict[str, str] = {
    "_validator": "the JSON Schema validator (None unless validate_records)",
    "record_counter_metric": "counted per run of records on the fast path (the SDK's per record)",
}
"""Attributes of a Sink instance."""
