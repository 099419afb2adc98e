"""One canonical idempotency key per row: canonical value texts, an injective default
key, templates over canonical values, and the checks across a run's streams."""

from __future__ import annotations

import datetime as dt
import decimal
import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target_monk.emulator import MonkEmulator
from target_monk.errors import ConfigError, InvalidRecordError
from target_monk.mapping.key_space import KeySpace
from target_monk.mapping.mapper import EventMapper
from target_monk.mapping.settings import MappingSettings
from target_monk.mapping.values import canonical_text
from testkit.messages import interleaved_input
from testkit.processes import base_config, run_in_process

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)
SCHEMA = {
    "properties": {
        "period_start": {"type": ["string", "null"], "format": "date-time"},
        "day": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "note": {"type": "string"},
    }
}
EIGHT_AM_UTC = "2026-03-01T08:00:00Z"


def key(record: dict, keys=("id",), stream: str = "s", template: str | None = None) -> str:
    settings = MappingSettings(idempotency_key_template=template)
    return EventMapper(stream, keys, settings, SCHEMA).idempotency_key(record)


@pytest.mark.parametrize(
    ("value", "datelike", "text"),
    [
        ("cus_1", None, "cus_1"),
        ("2026-03-01T08:00:00+00:00", None, "2026-03-01T08:00:00+00:00"),  # just a string
        ("2026-03-01T08:00:00+00:00", "date-time", EIGHT_AM_UTC),
        ("2026-03-01T09:00:00+01:00", "date-time", EIGHT_AM_UTC),
        ("2026-03-01 08:00:00Z", "date-time", EIGHT_AM_UTC),
        ("2026-03-01T08:00:00", "date-time", EIGHT_AM_UTC),  # naive: UTC
        ("2026-03-01T08:00:00.500+00:00", "date-time", "2026-03-01T08:00:00.5Z"),
        (dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC), None, EIGHT_AM_UTC),
        (
            dt.datetime(2026, 3, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            None,
            EIGHT_AM_UTC,
        ),
        (dt.datetime(2026, 3, 1, 8), None, EIGHT_AM_UTC),
        ("2026-03-01", "date", "2026-03-01"),
        (dt.date(2026, 3, 1), None, "2026-03-01"),
        ("08:00:00", "time", "08:00:00"),
        (42, None, "42"),
        (True, None, "True"),
        (decimal.Decimal("12.50"), None, "12.5"),
        (decimal.Decimal("5.0"), None, "5"),
        (decimal.Decimal("1E+2"), None, "100"),
        (decimal.Decimal("-0.00"), None, "0"),
        (
            decimal.Decimal("0.1000000000000000000000000000000001"),
            None,
            "0.1000000000000000000000000000000001",
        ),
        (12.5, None, "12.5"),
        (5.0, None, "5"),
    ],
)
def test_canonical_text(value: object, datelike: str | None, text: str) -> None:
    assert canonical_text(value, datelike) == text


@pytest.mark.parametrize(
    ("value", "datelike"),
    [("yesterday", "date-time"), (decimal.Decimal("NaN"), None), ({"a": 1}, None), ([1], None)],
)
def test_no_canonical_text(value: object, datelike: str | None) -> None:
    with pytest.raises(ValueError):
        canonical_text(value, datelike)


def test_simple_keys_are_as_they_always_were() -> None:
    assert key({"id": 42}) == "s:42"
    assert key({"id": "a:b\\c"}) == "s:a:b\\c"  # a single value needs no escaping
    assert key({"id": 7, "region": "eu"}, keys=("id", "region")) == "s:7:eu"
    assert key({"id": 7}, stream="public-billing_events") == "public-billing_events:7"
    assert key({"id": 7}, template="sync_{id}") == "sync_7"


def test_separator_inside_composite_values_is_escaped() -> None:
    keys = ("a", "b")
    assert key({"a": "x:y", "b": "z"}, keys) == "s:x\\:y:z"
    assert key({"a": "x", "b": "y:z"}, keys) == "s:x:y:z"  # the last value stays as it is
    assert key({"a": "x\\", "b": "y"}, keys) == "s:x\\\\:y"
    assert key({"id": 1}, stream="a:b") == "a\\:b:1"


def test_same_instant_same_key_however_written() -> None:
    keys = ("customer", "period_start")
    written = [
        "2026-03-01T08:00:00Z",
        "2026-03-01T08:00:00+00:00",
        "2026-03-01T09:00:00+01:00",
        "2026-03-01T08:00:00.000000Z",
        dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC),
    ]
    found = {key({"customer": "cus_0", "period_start": value}, keys) for value in written}
    assert found == {f"s:cus_0:{EIGHT_AM_UTC}"}
    swapped = {key({"customer": "cus_0", "period_start": v}, keys[::-1]) for v in written}
    assert swapped == {"s:2026-03-01T08\\:00\\:00Z:cus_0"}
    templated = {
        key({"customer": "c", "period_start": v}, keys, template="{customer}@{period_start}")
        for v in written
    }
    assert templated == {"c@2026-03-01T08:00:00Z"}


def text_or_int() -> st.SearchStrategy:
    return st.one_of(
        st.text(alphabet=st.sampled_from("ab:\\ "), min_size=1, max_size=6),
        st.integers(min_value=-3, max_value=3),
    )


@given(
    st.integers(min_value=1, max_value=3).flatmap(
        lambda n: st.tuples(st.tuples(*[text_or_int()] * n), st.tuples(*[text_or_int()] * n))
    )
)
def test_distinct_key_tuples_never_share_a_key(pair: tuple[tuple, tuple]) -> None:
    first, second = pair
    names = tuple(f"k{i}" for i in range(len(first)))
    one, two = (key(dict(zip(names, values, strict=True)), names) for values in pair)
    assert (one == two) == (tuple(map(str, first)) == tuple(map(str, second)))


@given(
    st.text(alphabet="ab:\\", min_size=1, max_size=4),
    st.text(alphabet="ab:\\", min_size=1, max_size=4),
)
def test_distinct_streams_never_share_a_key(stream_a: str, stream_b: str) -> None:
    same_value = {"id": "a:b"}
    assert (key(same_value, stream=stream_a) == key(same_value, stream=stream_b)) == (
        stream_a == stream_b
    )


@pytest.mark.parametrize(
    ("record", "field"),
    [({"id": None}, "id"), ({"id": ""}, "id"), ({}, "id"), ({"id": {"x": 1}}, "id")],
)
def test_unusable_key_values_are_invalid(record: dict, field: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        key(record)
    assert info.value.field == field


@pytest.mark.parametrize("template", ["sync_{id}", "{stream}-{id}"])
def test_template_values_must_be_set(template: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        key({"id": None}, template=template)
    assert info.value.field == "id"
    assert "sync_None" not in str(info.value)


def test_template_keeps_integers_for_format_specs_and_canonical_texts_otherwise() -> None:
    assert key({"id": 7}, template="row-{id:05d}") == "row-00007"
    record = {"id": 7, "period_start": "2026-03-01T09:00:00+01:00"}
    assert key(record, template="{id}@{period_start}") == f"7@{EIGHT_AM_UTC}"
    assert key({"id": 7, "stream": "ignored"}, template="{stream}/{id}") == "s/7"


@pytest.mark.parametrize("template", ["sync_{}", "sync_{0}", "constant", "{stream}", "sync_{id"])
def test_templates_that_cannot_key_rows_are_refused(template: str) -> None:
    with pytest.raises(ConfigError, match="idempotency_key_template"):
        EventMapper("s", ("id",), MappingSettings(idempotency_key_template=template))


def test_a_template_without_stream_serves_one_stream_only() -> None:
    space = KeySpace({})
    settings = MappingSettings(idempotency_key_template="sync_{id}")
    space.add(EventMapper("a", ("id",), settings))
    space.add(EventMapper("a", ("id",), settings))  # the same stream again (a new SCHEMA)
    with pytest.raises(ConfigError, match="'a' and 'b'"):
        space.add(EventMapper("b", ("id",), settings))
    with_stream = MappingSettings(idempotency_key_template="{stream}_{id}")
    space.add(EventMapper("c", ("id",), with_stream))
    space.add(EventMapper("d", ("id",), with_stream))


def test_stream_overrides_must_name_streams_exactly() -> None:
    space = KeySpace({"Seats": {}, "usage": {}, "gone": {}})
    space.add(EventMapper("usage", ("id",), MappingSettings()))
    with pytest.raises(ConfigError, match="'Seats' but the stream is 'seats'"):
        space.add(EventMapper("seats", ("id",), MappingSettings()))
    assert space.warnings() == [
        "stream_overrides names ['Seats', 'gone'], which no stream of this run matched: "
        "check the names (they must equal the tap's stream names exactly)"
    ]


def test_a_key_namespace_keeps_keys_across_stream_names() -> None:
    """The same table as two taps name it: one key_namespace, identical keys."""
    settings = MappingSettings(key_namespace="billing_events")
    rows: list[dict[str, t.Any]] = [{"id": 1}, {"id": "a:b"}, {"id": 10**12}]
    keys = {
        stream: [EventMapper(stream, ("id",), settings).idempotency_key(r) for r in rows]
        for stream in ("billing-billing_events", "billing_events")
    }
    assert keys["billing-billing_events"] == keys["billing_events"]
    assert keys["billing_events"] == [
        "billing_events:1",
        "billing_events:a:b",
        "billing_events:1000000000000",
    ]
    assert key({"id": 1}, stream="billing-billing_events") == "billing-billing_events:1"


def test_a_key_namespace_serves_one_stream_only() -> None:
    space = KeySpace({})
    space.add(EventMapper("a", ("id",), MappingSettings(key_namespace="events")))
    space.add(EventMapper("a", ("id",), MappingSettings(key_namespace="events")))  # new SCHEMA
    with pytest.raises(ConfigError, match="streams 'a' and 'b' both key their events"):
        space.add(EventMapper("b", ("id",), MappingSettings(key_namespace="events")))
    with pytest.raises(ConfigError, match="streams 'a' and 'events' both"):
        space.add(EventMapper("events", ("id",), MappingSettings()))


def test_the_same_rows_under_two_stream_names_share_every_key(
    emulator: MonkEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue #16's two MySQL taps, end to end: with one key_namespace, switching from
    one stream name to the other re-bills nothing."""
    names = ("billing-billing_events", "billing_events")
    overrides = {name: {"key_namespace": "billing_events"} for name in names}
    for name in names:
        data = interleaved_input({name: 2000}, state_every=1000)
        run_in_process(base_config(emulator, stream_overrides=overrides), data.text(), capfd)
    assert len(emulator.events) == 2000
    assert set(emulator.writes.values()) == {2}  # every key written by both
    assert min(emulator.events) == "billing_events:0"
