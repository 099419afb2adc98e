"""singer-sdk's standard target tests, run against the Monk emulator.

The SDK's sample streams carry no customer, event name or time, so the config
adds them with a stream map (which also exercises the SDK's stream maps) and
sets a constant event name.

Left out, and why:
- TargetMultipleStateMessages: compares the runner's parsed STATE dicts with
  JSON strings, so it cannot pass for any target (the SDK leaves it out of its
  own default suite too). tests/e2e/test_target.py checks STATE output closely.
- TargetRecordMissingKeyProperty is kept, expecting target-monk's one-line
  InvalidRecordError (stream, key, field) instead of the SDK's exception, and
  TargetRecordBeforeSchemaTest expecting target-monk's InputError.
- TargetPrimaryKeyUpdates, TargetNoPrimaryKeys, TargetSchemaNoProperties and
  TargetRecordMissingRequiredProperty are kept, but inverted: their streams
  declare no key properties, and target-monk must refuse such a stream at its
  SCHEMA (no stable idempotencyKey could be derived). They assert that refusal.
"""

from __future__ import annotations

import importlib.resources
import typing as t
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class, target_test_streams
from singer_sdk.testing import target_tests as sdk
from singer_sdk.testing.suites import SingerTestSuite

from target_monk.emulator import MonkEmulator
from target_monk.errors import ConfigError, InputError, InvalidRecordError
from target_monk.singer.target import TargetMonk
from testkit.postgres import free_port
from testkit.processes import API_KEY, run_target

# The SDK builds its test class from a config at import time, so the emulator's port
# is chosen now; the emulator itself runs only while this module's tests do.
PORT = free_port()
CONFIG = {
    "api_key": API_KEY,
    "api_url": f"http://127.0.0.1:{PORT}",
    "event_name": "sdk_test",
    "external_customer_id_field": "monk_customer",
    "timestamp_field": "monk_time",
    "stream_maps": {"*": {"monk_customer": "'cus_sdk'", "monk_time": "'2026-01-01T00:00:00Z'"}},
}


def expecting(test_class: type, error: type[Exception], match: str) -> type:
    """The SDK test, expecting target-monk's own error instead of the SDK's outcome."""

    def test(self) -> None:
        with pytest.raises(error, match=match):
            test_class.test(self)  # type: ignore[attr-defined]

    return type(test_class.__name__ + "Refused", (test_class,), {"test": test})


def refused_without_keys(test_class: type) -> type:
    """The SDK test, expecting target-monk's refusal of a stream without key properties."""
    return expecting(test_class, ConfigError, "idempotency_key_template")


SUITE: SingerTestSuite = SingerTestSuite(
    kind="target",
    tests=[
        sdk.TargetArrayData,
        sdk.TargetCamelcaseComplexSchema,
        sdk.TargetCamelcaseTest,
        sdk.TargetCliPrintsTest,
        sdk.TargetDuplicateRecords,
        sdk.TargetEncodedStringData,
        sdk.TargetInvalidSchemaTest,
        sdk.TargetOptionalAttributes,
        # The SDK expects its RecordsWithoutSchemaException; target-monk's says the same.
        expecting(sdk.TargetRecordBeforeSchemaTest, InputError, "arrived before its SCHEMA"),
        # The SDK expects its MissingKeyPropertiesError; target-monk names the record.
        expecting(
            sdk.TargetRecordMissingKeyProperty,
            InvalidRecordError,
            "stream 'test_record_missing_key_property' .* field 'id'",
        ),
        sdk.TargetRecordMissingOptionalFields,
        sdk.TargetSchemaUpdates,
        sdk.TargetSpecialCharsInAttributes,
        refused_without_keys(sdk.TargetNoPrimaryKeys),
        refused_without_keys(sdk.TargetPrimaryKeyUpdates),
        refused_without_keys(sdk.TargetRecordMissingRequiredProperty),
        refused_without_keys(sdk.TargetSchemaNoProperties),
    ],
)

TestTargetMonk = get_target_test_class(
    TargetMonk, config=CONFIG, include_target_tests=False, custom_suites=[SUITE]
)


@pytest.fixture(scope="module", autouse=True)
def sdk_emulator() -> t.Iterator[MonkEmulator]:
    """The emulator every test of this module (the SDK's suite too) posts to."""
    with MonkEmulator(API_KEY, port=PORT) as running:
        yield running


def test_duplicate_records_collapse_to_the_latest_version_per_key(tmp_path: Path) -> None:
    """The SDK's duplicate-records input: the same row thrice is one event, the last."""
    stream_file = importlib.resources.files(target_test_streams) / "duplicate_records.singer"
    with MonkEmulator(API_KEY) as emulator:
        config = {**CONFIG, "api_url": emulator.url}
        run = run_target(config, stream_file.read_bytes(), tmp_path, emulator)
        events = dict(emulator.events)
    assert run.returncode == 0, run.stderr[-2000:]
    assert events["test_duplicate_records:1"]["properties"]["metric"] == 100
    assert events["test_duplicate_records:2"]["properties"]["metric"] == 20
    assert set(events) == {"test_duplicate_records:1", "test_duplicate_records:2"}
    assert all(e["eventName"] == "sdk_test" for e in events.values())
