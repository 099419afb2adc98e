"""Mapping rules, table-driven: record in, Monk event (or a named error) out."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from target_monk.errors import ConfigError, InvalidRecordError
from target_monk.mapping.mapper import EventMapper
from target_monk.mapping.settings import MappingSettings

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)
UUID = "6f1c2a1e-93a4-4a51-9d1c-2b0c6f9d7e10"
BASE = {
    "id": 7,
    "external_customer_id": "cus_1",
    "event_name": "api_call",
    "timestamp": "2026-03-15T10:30:00Z",
}


def mapped(record: dict, stream: str = "usage", keys=("id",), **settings) -> dict:
    return EventMapper(stream, keys, MappingSettings(**settings)).map(record, NOW)


def failure(record: dict, stream: str = "usage", keys=("id",), **settings) -> InvalidRecordError:
    with pytest.raises(InvalidRecordError) as info:
        mapped(record, stream, keys, **settings)
    return info.value


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, {"externalCustomerId": "cus_1"}),
        ({"customer_id": UUID}, {"customerId": UUID}),
        ({"customer_id": ""}, {"externalCustomerId": "cus_1"}),
        ({"customer_id": "  "}, {"externalCustomerId": "cus_1"}),
        ({"customer_id": None}, {"externalCustomerId": "cus_1"}),
        ({"external_customer_id": 42}, {"externalCustomerId": "42"}),
    ],
    ids=["external", "customer-wins", "empty-customer", "blank-customer", "null-customer", "int"],
)
def test_customer_ids_exactly_one(change: dict, expected: dict) -> None:
    event = mapped({**BASE, **change})
    assert {k: event[k] for k in ("customerId", "externalCustomerId") if k in event} == expected


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"external_customer_id": None}, "customer_id/external_customer_id", "neither"),
        ({"external_customer_id": ""}, "customer_id/external_customer_id", "neither"),
        ({"customer_id": "not-a-uuid"}, "customer_id", "UUID"),
        ({"external_customer_id": ["a"]}, "external_customer_id", "must be a string"),
        ({"event_name": ""}, "event_name", "non-empty"),
        ({"event_name": None}, "event_name", "non-empty"),
        ({"event_name": 5}, "event_name", "non-empty"),
        ({"timestamp": None}, "timestamp", "required"),
        ({"timestamp": "yesterday"}, "timestamp", "not an ISO 8601"),
        ({"timestamp": 1710000000}, "timestamp", "expected an ISO 8601"),
        ({"timestamp": "2026-02-30T10:30:00Z"}, "timestamp", "out of range"),
        ({"timestamp": "2026-03-15T10:30:61Z"}, "timestamp", "must be in 0..59"),
        ({"timestamp": "2026-03-15T13:00:01Z"}, "timestamp", "more than 1 hour in the future"),
        ({"id": None}, "id", "key property is missing"),
        ({"tokens": float("nan")}, "tokens", "finite"),
        ({"tokens": decimal.Decimal("Infinity")}, "tokens", "finite"),
        ({"blob": b"x"}, "blob", "not a primitive"),
        ({"a.b": 1, "a": {"b": 2}}, "a.b", "collides"),
    ],
)
def test_invalid_records_name_stream_key_field_and_reason(
    change: dict, field: str, reason: str
) -> None:
    error = failure({**BASE, **change})
    assert (error.stream, error.field) == ("usage", field)
    assert reason in error.reason
    assert "stream 'usage'" in str(error)
    assert f"field '{field}'" in str(error)
    assert error.record_key == repr(change.get("id", 7))


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("2026-03-15T10:30:00Z", "2026-03-15T10:30:00Z"),
        ("2026-03-15T12:30:00+02:00", "2026-03-15T10:30:00Z"),
        ("2026-03-15T10:30:00.123+00:00", "2026-03-15T10:30:00.123Z"),
        ("2026-W11-7T10:30:00Z", "2026-03-15T10:30:00Z"),
        ("2026-03-15T05:30:00.250-05:00", "2026-03-15T10:30:00.25Z"),
        ("2026-03-15T10:30:00", "2026-03-15T10:30:00Z"),
        ("2026-03-15", "2026-03-15T00:00:00Z"),
        (dt.datetime(2026, 3, 15, 10, 30), "2026-03-15T10:30:00Z"),
        (
            dt.datetime(2026, 3, 15, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2026-03-15T10:30:00Z",
        ),
        (dt.date(2026, 3, 15), "2026-03-15T00:00:00Z"),
        ("2026-03-15T13:00:00Z", "2026-03-15T13:00:00Z"),
    ],
    ids=[
        "z",
        "offset",
        "utc-offset",
        "week-date",
        "fraction",
        "naive",
        "date",
        "dt-naive",
        "dt-aware",
        "date-obj",
        "1h",
    ],
)
def test_timestamps_sent_as_utc_with_z(value: object, sent: str) -> None:
    assert mapped({**BASE, "timestamp": value})["timestamp"] == sent


def test_properties_are_the_unmapped_fields_flattened() -> None:
    record = {
        **BASE,
        "customer_id": None,
        "region": "eu",
        "tokens": decimal.Decimal("12.50"),
        "ok": True,
        "note": None,
        "meta": {"model": "m1", "cfg": {"temp": 0.5, "skip": None}},
        "tags": ["a", {"b": decimal.Decimal("1.0")}],
        "seen_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        "_sdc_extracted_at": "2026-03-15T00:00:00Z",
    }
    assert mapped(record)["properties"] == {
        "id": 7,
        "region": "eu",
        "tokens": decimal.Decimal("12.50"),
        "ok": True,
        "meta.model": "m1",
        "meta.cfg.temp": 0.5,
        "tags": '["a",{"b":1.0}]',
        "seen_at": "2026-03-01T00:00:00Z",
    }


def test_property_fields_allowlist() -> None:
    record = {**BASE, "region": "eu", "model": None, "tokens": 3}
    event = mapped(record, property_fields=("region", "model", "tokens", "absent"))
    assert event["properties"] == {"region": "eu", "tokens": 3}


def test_properties_object_field_wins() -> None:
    record = {**BASE, "region": "eu", "properties": {"model": "m1", "deep": {"x": 1}}}
    assert mapped(record)["properties"] == {"model": "m1", "deep.x": 1}


def test_no_properties_key_when_nothing_left() -> None:
    event = EventMapper(
        "s", (), MappingSettings(idempotency_key_template="{stream}-{timestamp}")
    ).map({k: v for k, v in BASE.items() if k != "id"}, NOW)
    assert "properties" not in event


def test_constant_event_name_wins_over_field_and_frees_the_field() -> None:
    event = mapped({**BASE, "event_name": ""}, event_name="tokens_used")
    assert event["eventName"] == "tokens_used"
    assert event["properties"] == {"id": 7, "event_name": ""}


def test_custom_field_names() -> None:
    record = {"row": 3, "acct": "a9", "kind": "gpu_s", "at": "2026-03-15T10:00:00Z", "n": 2}
    event = mapped(
        record,
        keys=("row",),
        external_customer_id_field="acct",
        event_name_field="kind",
        timestamp_field="at",
    )
    assert event == {
        "externalCustomerId": "a9",
        "eventName": "gpu_s",
        "timestamp": "2026-03-15T10:00:00Z",
        "idempotencyKey": "usage:3",
        "properties": {"row": 3, "n": 2},
    }


@pytest.mark.parametrize(
    ("keys", "template", "record", "key"),
    [
        (("id",), None, BASE, "usage:7"),
        (("id", "region"), None, {**BASE, "region": "eu"}, "usage:7:eu"),
        (("id",), "sync_{id}", BASE, "sync_7"),
        ((), "{stream}-{event_name}-{id}", BASE, "usage-api_call-7"),
    ],
)
def test_idempotency_keys_are_stable(keys, template, record, key) -> None:
    mapper = EventMapper("usage", keys, MappingSettings(idempotency_key_template=template))
    assert mapper.map(record, NOW)["idempotencyKey"] == key
    assert mapper.map(dict(record), NOW + dt.timedelta(days=9))["idempotencyKey"] == key


def test_template_with_missing_field_is_invalid() -> None:
    error = failure(BASE, idempotency_key_template="sync_{row_id}")
    assert error.field == "row_id"
    assert "idempotency_key_template" in error.reason


def test_stream_without_key_or_template_is_refused_with_a_fix() -> None:
    with pytest.raises(ConfigError, match="idempotency_key_template"):
        EventMapper("logs", (), MappingSettings())


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("37.7919", decimal.Decimal("37.7919")),
        (" 42 ", 42),
        ("12.50", decimal.Decimal("12.5")),
        ("1e3", 1000),
        ("-0.5", decimal.Decimal("-0.5")),
        ("0.1000000000000000000001", decimal.Decimal("0.1000000000000000000001")),
        (7, 7),
        (decimal.Decimal("2.0"), 2),
    ],
)
def test_numeric_properties_are_sent_as_exact_numbers(value: object, sent: object) -> None:
    event = mapped({**BASE, "tokens": value}, numeric_properties=("tokens",))
    assert event["properties"]["tokens"] == sent
    assert type(event["properties"]["tokens"]) is type(sent)


@pytest.mark.parametrize("value", ["1,000", "12,5", "abc", "1e", "NaN", "inf", True, ["1"]])
def test_a_numeric_property_that_is_not_a_number_is_invalid(value: object) -> None:
    error = failure({**BASE, "tokens": value}, numeric_properties=("tokens",))
    assert error.field == "tokens"
    assert "number" in error.reason


def test_an_empty_or_null_numeric_property_is_no_value() -> None:
    for value in ("", "  ", None):
        event = mapped({**BASE, "tokens": value, "x": 1}, numeric_properties=("tokens",))
        assert event["properties"] == {"id": 7, "x": 1}


def test_schema_numbers_arriving_as_text_are_numbers_and_text_numbers_are_warned_of() -> None:
    schema = {"properties": {"tokens": {"type": ["number", "null"]}, "cost": {"type": "string"}}}
    mapper = EventMapper("usage", ("id",), MappingSettings(), schema)
    for row in range(3):
        event = mapper.map({**BASE, "id": str(row), "tokens": "1.5", "cost": f"{row}.25"}, NOW)
        assert event["properties"]["tokens"] == decimal.Decimal("1.5")
        assert event["properties"]["cost"] == f"{row}.25"
    assert mapper.warnings() == [
        "'cost' arrives as text in stream 'usage' (all of its first 3 records); Monk's "
        "meters will not sum it: list it in numeric_properties"
    ]  # not 'id' (a key property), not 'tokens' (a number by the schema)
    mapper.map({**BASE, "cost": "n/a"}, NOW)
    assert mapper.warnings() == []
