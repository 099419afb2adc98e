"""The singer-sdk internals target-monk relies on: private names, or public ones whose
behaviour it depends on, that an SDK upgrade may rename or change.

tests/test_sdk_internals.py checks that each still exists and fails naming the one
that is gone. Each entry says what target-monk does with it; see also
docs/architecture.md.
"""

from __future__ import annotations

CLASS_MEMBERS: dict[str, str] = {
    # Target: message hooks overridden (each marked @override).
    "singer_sdk.Target._process_record_message": (
        "called by the reader per RECORD on the SDK's path; target-monk wraps it to "
        "report record errors in one line and to send partial batches holding back STATE"
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
    "singer_sdk.Target._handle_max_record_age": "called after each run of records (fast path)",
    "singer_sdk.Target._assert_line_requires": "called to check message fields",
    "singer_sdk.Target.drain_one": "called to send one sink's partial batch",
    "singer_sdk.Target.process_endofpipe": "overridden: then waits for every batch",
    "singer_sdk.Target.listen": (
        "final in the SDK, so not overridden: the reader's on_failure hook and "
        "process_endofpipe route failures to TargetMonk.fail()"
    ),
    "singer_sdk.Target.invoke": (
        "overridden to mark a command-line run (failures exit 1 after fail()), then the SDK's own"
    ),
    # Sink.
    "singer_sdk.sinks.Sink._validate_and_parse": (
        "overridden: validation without the SDK's date-time parsing and traceback log"
    ),
    "singer_sdk.sinks.Sink.process_record": "overridden: the SDK's path maps one record",
    "singer_sdk.sinks.Sink.tally_record_read": "called with a run's count (fast path)",
    "singer_sdk.sinks.Sink.process_batch": "overridden: hands the events to Delivery",
    "singer_sdk.sinks.Sink.max_size": "read once: batch_size_rows, the batch's row cap",
    # Reader.
    "singer_sdk.contrib.msgspec.MsgSpecReader.process_lines": (
        "overridden by SingerBytesReader: bytes in chunks, runs of records, ticks"
    ),
    "singer_sdk.contrib.msgspec.MsgSpecReader.deserialize_json": "overridden: own errors",
    "singer_sdk.contrib.msgspec.MsgSpecReader._process_unknown_message": (
        "overridden: an unknown message type fails the run in one line"
    ),
    "singer_sdk.contrib.msgspec.MsgSpecReader.assert_line_requires": "called per message",
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
    "_sinks_active": "the fast path finds a stream's sink here; the summary counts records",
    "_sinks_to_clear": "the summary counts records of sinks replaced by a new SCHEMA",
    "_latest_state": "never set by target-monk (see _process_state_message)",
    "mapper": "mapper.stream_maps: is a stream known (SCHEMA seen) on the SDK's path",
    "message_reader": "the SingerBytesReader instance; its hooks are set at start-up",
}
"""Attributes of a Target instance."""

SINK_ATTRIBUTES: dict[str, str] = {
    "_validator": "the JSON Schema validator (None unless validate_records)",
    "_batch_records_read": "records in the batch being filled: where a full batch ends",
    "_total_records_read": "records read by the sink, for the summary",
    "record_counter_metric": "counted per batch on the fast path",
}
"""Attributes of a Sink instance."""
