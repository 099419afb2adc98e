"""Chaos: faults on the way to Monk and odd input; every case checks exact delivery by
idempotency key and that no STATE got ahead of an accepted event.

Other chaos cases live beside the code they exercise: malformed JSON, record before
schema, non-UTF-8 bytes, neither customer id, future timestamp, empty event name and
SIGTERM while failing in test_bad_input.py; a float in STATE and batch_size_rows
10,001 in test_target.py; dead letters in test_operations.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.messages import SingerInput, interleaved_input, record_message, schema_message
from testkit.processes import TargetRun, base_config, feed, run_target, start_target, wait_until

pytestmark = pytest.mark.in_flight  # rerun with 1 and 8 batches in flight

UUID = "6f1c2a1e-93a4-4a51-9d1c-2b0c6f9d7e10"


def assert_state_never_ahead(run: TargetRun, data: SingerInput) -> None:
    """Each STATE written had every record before it held by Monk at that moment."""
    for state, held in zip(run.states, run.keys_held_at_state, strict=True):
        needed = next(keys for value, keys in data.keys_before_state if value == state)
        assert needed <= held, "a STATE got ahead of an accepted event"


def assert_exact(run: TargetRun, data: SingerInput, emulator: MonkEmulator) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert emulator.held_keys() == data.keys_before_state[-1][1]
    assert run.states[-1] == data.keys_before_state[-1][0]
    assert_state_never_ahead(run, data)


@pytest.mark.parametrize(
    "rules",
    [
        [Rule(status=429, retry_after="1")] * 6,
        [Rule(status=500), Rule(status=502), Rule(status=503)] * 2,
        [Rule(drop=True)] * 4,
        [Rule(delay=1.5)] * 2,
    ],
    ids=["429-storm-retry-after", "5xx-run", "dropped-connections", "slower-than-timeout"],
)
def test_transient_faults_deliver_every_event_once(
    emulator: MonkEmulator, tmp_path: Path, rules: list[Rule]
) -> None:
    for number, rule in enumerate(rules, 1):
        emulator.script[number] = rule
    data = interleaved_input({"a": 12_000, "b": 3_000}, state_every=1000)
    config = base_config(emulator, request_timeout_seconds=1, max_retries=8)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert_exact(run, data, emulator)
    assert "Retrying batch" in run.stderr


@pytest.mark.parametrize(
    ("config_change", "rule", "message"),
    [
        ({"max_retries": 2}, Rule(status=503), "did not accept batch"),
        ({}, Rule(status=401, code="UNAUTHORIZED"), "API key refused by Monk (HTTP 401"),
        ({}, Rule(status=403, code="FORBIDDEN"), "API key refused by Monk (HTTP 403"),
        ({}, Rule(status=413, code="PAYLOAD_TOO_LARGE"), "HTTP 413 PAYLOAD_TOO_LARGE"),
    ],
    ids=["retries-exhausted", "401", "403", "413"],
)
def test_permanent_faults_fail_clearly_without_state_past_accepted(
    emulator: MonkEmulator, tmp_path: Path, config_change: dict, rule: Rule, message: str
) -> None:
    emulator.fail_from = (2, rule)
    data = interleaved_input({"s": 12_000}, state_every=1000)
    config = base_config(emulator, max_in_flight=1, **config_change)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert run.returncode != 0
    assert message in run.stderr
    assert len(emulator.held_keys()) == 5000
    assert run.states == [data.keys_before_state[4][0]]
    assert_state_never_ahead(run, data)


def test_sigkill_then_replay_from_the_last_state(emulator: MonkEmulator, tmp_path: Path) -> None:
    total = 30_000
    data = interleaved_input({"s": total}, state_every=1000)
    # Requests from the 4th on wait at a gate: the kill lands with batches still to send.
    emulator.fail_from = (4, Rule(gate="held"))
    config = base_config(emulator, max_in_flight=2)
    process = start_target(config, tmp_path, stderr=subprocess.DEVNULL)
    feeder = threading.Thread(target=feed, args=(process, data.text().encode()))
    feeder.start()
    first_state = json.loads(process.stdout.readline())
    wait_until(lambda: len(emulator.accepted_requests()) >= 3, timeout=60)
    wait_until(lambda: len(emulator.requests) >= 4, timeout=60)
    process.send_signal(signal.SIGKILL)
    emulator.fail_from = None
    emulator.gate("held").set()
    states = [first_state] + [json.loads(line) for line in process.stdout]
    process.wait(timeout=30)
    feeder.join(timeout=30)
    assert process.returncode == -signal.SIGKILL
    delivered_before_kill = len(emulator.held_keys())
    assert delivered_before_kill < total

    # What a tap does next run: start again from the bookmark (inclusive, as tap-postgres).
    bookmark = states[-1]["bookmarks"]["s"]["replication_key_value"]
    needed = next(keys for value, keys in data.keys_before_state if value == states[-1])
    assert needed <= emulator.held_keys()
    emulator.fail_from = None
    replay = interleaved_input({"s": total}, state_every=1000)
    replay.messages = [replay.messages[0]] + [
        m for m in replay.messages[1:] if m["type"] == "STATE" or m["record"]["id"] >= bookmark - 1
    ]
    rerun = run_target(base_config(emulator), replay.text(), tmp_path, emulator)
    assert rerun.returncode == 0, rerun.stderr
    assert emulator.held_keys() == data.keys_before_state[-1][1]  # nothing lost
    assert len(emulator.events) == total  # nothing doubled: one event per row
    assert rerun.states[-1] == data.keys_before_state[-1][0]


def test_odd_but_valid_records(emulator: MonkEmulator, tmp_path: Path) -> None:
    schema = schema_message("s")
    schema["schema"]["properties"].update(
        {
            "customer_id": {"type": ["string", "null"]},
            "meta": {"type": "object"},
            "tags": {"type": "array"},
            "blob": {"type": "string"},
        }
    )
    both = record_message("s", 1, customer_id=UUID)
    nested = record_message("s", 2, meta={"model": {"name": "m1", "size": 7}}, tags=["a", 1])
    huge = record_message("s", 3, blob="x" * 1_000_000)
    state = {"type": "STATE", "value": {"bookmarks": {"s": {"replication_key_value": 3}}}}
    text = "".join(json.dumps(m) + "\n" for m in (schema, both, nested, huge, state))
    run = run_target(base_config(emulator), text, tmp_path, emulator)
    assert run.returncode == 0, run.stderr
    events = emulator.events
    assert events["s:1"]["customerId"] == UUID
    assert "externalCustomerId" not in events["s:1"]
    assert events["s:2"]["properties"]["meta.model.name"] == "m1"
    assert events["s:2"]["properties"]["meta.model.size"] == 7
    assert events["s:2"]["properties"]["tags"] == '["a",1]'
    assert len(events["s:3"]["properties"]["blob"]) == 1_000_000
    assert run.states == [state["value"]]
