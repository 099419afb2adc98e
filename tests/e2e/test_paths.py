"""Same row, same event, on every path: the fast path, the SDK's path (validate_records,
a stream map, flattening) and BATCH files (JSONL plain and gzip, Parquet) give
byte-identical events and keys, one distinct key per distinct row; numbers that arrive
as text, a key namespace and a deleted row are treated alike on each."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import json
import typing as t
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from target_monk.emulator import MonkEmulator
from testkit.processes import API_KEY, base_config, run_target

USAGE_SCHEMA = {
    "type": "SCHEMA",
    "stream": "hourly_usage",
    "key_properties": ["customer", "period_start", "rate"],
    "schema": {
        "type": "object",
        "properties": {
            "customer": {"type": "string"},
            "period_start": {"type": "string", "format": "date-time"},
            "rate": {"type": "number"},
            "external_customer_id": {"type": "string"},
            "event_name": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "billed_at": {"type": ["string", "null"], "format": "date-time"},
            "tokens": {"type": "integer"},
        },
    },
}
SEATS_SCHEMA = {
    "type": "SCHEMA",
    "stream": "seats",
    "key_properties": ["seat"],
    "schema": {
        "type": "object",
        "properties": {
            "seat": {"type": "string"},
            "external_customer_id": {"type": ["string", "null"]},
            "event_name": {"type": ["string", "null"]},
            "timestamp": {"type": ["string", "null"], "format": "date-time"},
            "hours": {"type": ["string", "null"]},
            "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}
HOURS = {"s1": "1.50", "s:1": " 2 ", "s:1:": "1e1", "s\\:1": "0.25"}
"""Seat hours as a CSV tap sends them: text, sent as numbers (numeric_properties)."""
DELETED_AT = "2026-03-02T00:00:00Z"
COMMON = {
    "numeric_properties": ["hours"],
    "stream_overrides": {"seats": {"key_namespace": "seat_events"}},
}
"""Settings of every path."""
# One instant written the ways taps write it.
INSTANT_TEXTS = [
    "2026-03-01T{h:02d}:00:00Z",
    "2026-03-01T{h:02d}:00:00+00:00",
    "2026-03-01T{h:02d}:00:00.000000+00:00",
    "2026-03-01 {h:02d}:00:00Z",
]
CUSTOMERS = ["a", "a:b", "b:c", "a:b:c", "x\\", "x"]


def usage_rows() -> list[dict]:
    rows = []
    for hour in range(6):
        for index, customer in enumerate(CUSTOMERS):
            for rate in ("12.50", "3"):
                rows.append(
                    {
                        "customer": customer,
                        "period_start": INSTANT_TEXTS[(hour + index) % 4].format(h=hour),
                        "rate": decimal.Decimal(rate),
                        "external_customer_id": f"cus_{index}",
                        "event_name": "tokens",
                        "timestamp": f"2026-03-0{1 + hour % 3}T1{hour}:30:00.250-02:00",
                        "billed_at": INSTANT_TEXTS[index % 4].format(h=hour + 10),
                        "tokens": hour * 10 + index,
                    }
                )
    return rows


def seat_rows() -> list[dict]:
    """Four seats, then a log-based tap's delete of the first (its key only)."""
    rows = [
        {
            "seat": seat,
            "external_customer_id": "cus_s",
            "event_name": "seat",
            "timestamp": "2026-03-01T00:00:00Z",
            "hours": hours,
            "_sdc_deleted_at": None,
        }
        for seat, hours in HOURS.items()
    ]
    deleted = dict.fromkeys(rows[0], None)
    return [*rows, {**deleted, "seat": "s1", "_sdc_deleted_at": DELETED_AT}]


ENCODER = msgspec.json.Encoder(decimal_format="number")
DISTINCT_ROWS = len(usage_rows()) + len(HOURS)
STATE = {"type": "STATE", "value": {"bookmarks": {"hourly_usage": {"n": DISTINCT_ROWS}}}}


def encode(message: dict) -> bytes:
    return ENCODER.encode(message) + b"\n"


def record_lines() -> bytes:
    messages = [USAGE_SCHEMA, SEATS_SCHEMA]
    messages += [{"type": "RECORD", "stream": "hourly_usage", "record": r} for r in usage_rows()]
    messages += [{"type": "RECORD", "stream": "seats", "record": r} for r in seat_rows()]
    return b"".join(map(encode, [*messages, STATE]))


def batch_lines(tmp_path: Path, file_format: str) -> bytes:
    """The same rows as BATCH messages: usage in two files, seats in one."""
    rows = usage_rows()
    files = {
        "hourly_usage": [rows[: len(rows) // 2], rows[len(rows) // 2 :]],
        "seats": [seat_rows()],
    }
    messages = [encode(USAGE_SCHEMA), encode(SEATS_SCHEMA)]
    for stream, parts in files.items():
        urls = []
        for number, part in enumerate(parts):
            path = tmp_path / f"{stream}-{number}.{file_format}"
            write_batch_file(path, part, file_format)
            urls.append(path.as_uri())
        encoding = {
            "format": "parquet" if file_format == "parquet" else "jsonl",
            "compression": "gzip" if file_format == "jsonl.gz" else None,
        }
        messages.append(
            encode({"type": "BATCH", "stream": stream, "encoding": encoding, "manifest": urls})
        )
    return b"".join([*messages, encode(STATE)])


def write_batch_file(path: Path, rows: list[dict], file_format: str) -> None:
    if file_format == "parquet":  # typed columns: timestamps and decimals come back as such
        table = pa.Table.from_pylist([parquet_row(row) for row in rows])
        pq.write_table(table, path)
        return
    data = b"".join(ENCODER.encode(r) + b"\n" for r in rows)
    path.write_bytes(gzip.compress(data) if file_format == "jsonl.gz" else data)


def parquet_row(row: dict) -> dict:
    def instant(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)

    typed = dict(row)
    for name in ("period_start", "billed_at", "timestamp"):
        if typed.get(name) is not None:
            typed[name] = instant(typed[name])
    return typed


PATHS: dict[str, tuple[dict[str, t.Any], str | None]] = {
    "fast-path": ({}, None),
    "validate_records": ({"validate_records": True}, None),
    "stream-map": ({"stream_maps": {"hourly_usage": {"__filter__": "True"}}}, None),
    "flattening": ({"flattening_enabled": True, "flattening_max_depth": 1}, None),
    "batch-jsonl": ({}, "jsonl"),
    "batch-jsonl-gzip": ({}, "jsonl.gz"),
    "batch-parquet": ({}, "parquet"),
    "batch-jsonl-validate_records": ({"validate_records": True}, "jsonl"),
}


def delivered(emulator: MonkEmulator, tmp_path: Path, settings: dict, batch: str | None) -> dict:
    emulator.reset()
    data = batch_lines(tmp_path, batch) if batch else record_lines()
    deleted_path = tmp_path / "deleted.jsonl"
    deleted_path.unlink(missing_ok=True)
    config = base_config(emulator, **COMMON, **settings, deleted_records_path=str(deleted_path))
    run = run_target(config, data, tmp_path, emulator)
    assert run.returncode == 0, run.stderr[-3000:]
    deletes = [json.loads(line) for line in deleted_path.read_text().splitlines()]
    assert deletes == [
        {"stream": "seats", "key": "seat_events:s1", "deleted_at": DELETED_AT, "event": None}
    ]
    assert run.states == [STATE["value"]]
    assert run.keys_held_at_state[0] == emulator.held_keys()  # STATE after every record
    assert set(emulator.writes.values()) == {1}
    return {key: msgspec.json.encode(event) for key, event in emulator.events.items()}


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What the fast path delivers: the reference for every other path."""
    with MonkEmulator(API_KEY) as emulator:
        return delivered(emulator, tmp_path_factory.mktemp("reference"), {}, None)


def test_the_reference_has_one_key_per_distinct_row(expected: dict[str, bytes]) -> None:
    assert len(expected) == DISTINCT_ROWS
    keys = set(expected)
    midnight = "2026-03-01T00\\:00\\:00Z"  # escaped: more key values follow
    assert f"hourly_usage:a\\:b:{midnight}:12.5" in keys
    assert f"hourly_usage:a:b\\:c:{midnight}:12.5" not in keys  # no such row
    assert "seat_events:s:1:" in keys  # the namespace instead of the stream name
    assert "seat_events:s\\:1" in keys
    hours = {
        key: json.loads(event)["properties"]["hours"]
        for key, event in expected.items()
        if key.startswith("seat_events:")
    }
    assert hours == {
        "seat_events:s1": 1.5,
        "seat_events:s:1": 2,
        "seat_events:s:1:": 10,
        "seat_events:s\\:1": 0.25,
    }
    event = json.loads(expected[f"hourly_usage:a:{midnight}:3"])
    assert event["timestamp"] == "2026-03-01T12:30:00.25Z"
    assert event["properties"]["billed_at"] == "2026-03-01T10:00:00Z"


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_delivers_byte_identical_events(
    emulator: MonkEmulator, tmp_path: Path, expected: dict[str, bytes], path: str
) -> None:
    settings, batch = PATHS[path]
    got = delivered(emulator, tmp_path, settings, batch)
    assert sorted(got) == sorted(expected)
    assert got == expected
