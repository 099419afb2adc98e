"""Singer input for tests: SCHEMA and RECORD messages, interleaved streams with
STATE messages."""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass, field


def schema_message(stream: str, key_properties: t.Sequence[str] = ("id",)) -> dict:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "key_properties": list(key_properties),
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "external_customer_id": {"type": ["string", "null"]},
                "event_name": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "tokens": {"type": ["number", "null"]},
                "region": {"type": ["string", "null"]},
            },
        },
    }


def record_message(stream: str, row_id: int, **changes: t.Any) -> dict:
    record = {
        "id": row_id,
        "external_customer_id": f"cus_{row_id % 7}",
        "event_name": "api_call",
        "timestamp": "2026-03-15T10:30:00+00:00",
        "tokens": row_id % 100,
        "region": "eu",
        **changes,
    }
    return {"type": "RECORD", "stream": stream, "record": record}


@dataclass
class SingerInput:
    """Interleaved streams with a STATE every `state_every` records."""

    messages: list[dict] = field(default_factory=list)
    keys_before_state: list[tuple[dict, set[str]]] = field(default_factory=list)

    def text(self) -> str:
        return "".join(json.dumps(m) + "\n" for m in self.messages)


def interleaved_input(sizes: dict[str, int], state_every: int = 1000) -> SingerInput:
    """Round-robin records of several streams; STATE values count records per stream."""
    data = SingerInput()
    data.messages.extend(schema_message(s) for s in sizes)
    sent = dict.fromkeys(sizes, 0)
    keys: set[str] = set()
    total = 0
    while any(sent[s] < n for s, n in sizes.items()):
        for stream, size in sizes.items():
            if sent[stream] >= size:
                continue
            data.messages.append(record_message(stream, sent[stream]))
            keys.add(f"{stream}:{sent[stream]}")
            sent[stream] += 1
            total += 1
            if total % state_every == 0:
                value = {"bookmarks": {s: {"replication_key_value": c} for s, c in sent.items()}}
                data.messages.append({"type": "STATE", "value": value})
                data.keys_before_state.append((value, set(keys)))
    return data


GOOD_STATE = {"type": "STATE", "value": {"bookmarks": {"s": {"replication_key_value": 5000}}}}
LATE_STATE = {"type": "STATE", "value": {"bookmarks": {"s": {"replication_key_value": 9999}}}}


def lines(*messages: dict | str) -> str:
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


def full_batch_then(*tail: dict | str) -> str:
    """Stream `s`: 5000 good records (one full batch) and their STATE, then `tail`,
    then a later STATE."""
    good = [record_message("s", i) for i in range(5000)]
    return lines(schema_message("s"), *good, GOOD_STATE, *tail, LATE_STATE)
