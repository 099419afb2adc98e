"""Bad input and signals: a clear error, a non-zero exit, and no STATE past the problem."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.messages import interleaved_input, record_message, schema_message
from testkit.processes import API_KEY, base_config, run_target, start_target, wait_until

GOOD_STATE = {"type": "STATE", "value": {"bookmarks": {"s": {"replication_key_value": 5000}}}}
LATE_STATE = {"type": "STATE", "value": {"bookmarks": {"s": {"replication_key_value": 9999}}}}


def lines(*messages: dict | str) -> str:
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


def full_batch_then(*tail: dict | str) -> str:
    """5000 good records (one full batch) and their STATE, then `tail`, then a later STATE."""
    good = [record_message("s", i) for i in range(5000)]
    return lines(schema_message("s"), *good, GOOD_STATE, *tail, LATE_STATE)


def assert_stopped_at_the_bad_line(run, emulator: MonkEmulator, *needles: str) -> None:
    assert run.returncode != 0
    assert run.states == [GOOD_STATE["value"]]
    assert len(emulator.held_keys()) == 5000
    for needle in needles:
        assert needle in run.stderr, run.stderr[-2000:]
    assert API_KEY not in run.stderr + run.stdout


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"external_customer_id": None}, "customer_id/external_customer_id", "neither"),
        ({"customer_id": "cus_x"}, "customer_id", "UUID"),
        ({"event_name": ""}, "event_name", "non-empty"),
        ({"timestamp": "2099-01-01T00:00:00Z"}, "timestamp", "1 hour in the future"),
        ({"timestamp": None}, "timestamp", "required"),
    ],
    ids=["no-customer", "bad-uuid", "empty-name", "future", "no-timestamp"],
)
def test_invalid_record_fails_before_its_batch_is_sent(
    emulator: MonkEmulator, tmp_path: Path, change: dict, field: str, reason: str
) -> None:
    bad = record_message("s", 6001, **change)
    after = record_message("s", 6002)
    run = run_target(base_config(emulator), full_batch_then(bad, after), tmp_path, emulator)
    assert_stopped_at_the_bad_line(
        run, emulator, "stream 's'", "key 6001", f"field '{field}'", reason
    )
    assert "s:6002" not in emulator.held_keys()


def test_malformed_json_line(emulator: MonkEmulator, tmp_path: Path) -> None:
    text = full_batch_then('{"type": "RECORD", "stream": "s", "record": {"id": 1', "")
    run = run_target(base_config(emulator), text, tmp_path, emulator)
    assert_stopped_at_the_bad_line(run, emulator, "Unable to parse")


def test_non_utf8_bytes(emulator: MonkEmulator, tmp_path: Path) -> None:
    bad = b'{"type": "RECORD", "stream": "s", "record": {"id": "\xff\xfe"}}\n'
    late = (json.dumps(LATE_STATE) + "\n").encode()
    data = full_batch_then().encode().replace(late, bad + late)
    run = run_target(base_config(emulator), data, tmp_path, emulator)
    assert_stopped_at_the_bad_line(run, emulator, "not valid UTF-8")


def test_record_before_schema(emulator: MonkEmulator, tmp_path: Path) -> None:
    text = full_batch_then(record_message("other", 1))
    run = run_target(base_config(emulator), text, tmp_path, emulator)
    assert_stopped_at_the_bad_line(run, emulator, "'other'", "before its SCHEMA")


def test_stream_without_keys_refused_at_schema_with_a_fix(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    text = full_batch_then(schema_message("logs", key_properties=()), record_message("logs", 1))
    run = run_target(base_config(emulator), text, tmp_path, emulator)
    assert_stopped_at_the_bad_line(run, emulator, "'logs'", "idempotency_key_template")


@pytest.mark.parametrize("status", [400, 422])
def test_rejected_batch_fails_the_run_with_monks_error(
    emulator: MonkEmulator, tmp_path: Path, status: int
) -> None:
    emulator.script[2] = Rule(status=status, code="INVALID_EVENT")
    data = interleaved_input({"s": 12_000}, state_every=1000)
    run = run_target(base_config(emulator, max_in_flight=1), data.text(), tmp_path, emulator)
    assert run.returncode != 0
    assert f"HTTP {status} INVALID_EVENT" in run.stderr
    assert "requestId req_scripted" in run.stderr
    assert len(emulator.requests) == 2, "a rejected batch must not be retried, nor later ones sent"
    assert run.states == [data.keys_before_state[4][0]]
    lines = run.stderr.splitlines()
    summary = next(i for i, line in enumerate(lines) if "target-monk summary: " in line)
    failed = next(i for i, line in enumerate(lines) if "target-monk failed: " in line)
    assert '"events_accepted": 5000' in lines[summary]  # what the failed run did
    assert summary < failed


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_stops_at_once(emulator: MonkEmulator, tmp_path: Path, status: int) -> None:
    config = base_config(emulator, api_key="mk_live_" + "9" * 48)
    if status == 403:
        emulator.read_only_keys.add(config["api_key"])
    data = interleaved_input({"s": 100}, state_every=10)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert run.returncode != 0
    assert "API key refused" in run.stderr
    assert f"HTTP {status}" in run.stderr
    assert config["api_key"] not in run.stderr + run.stdout
    assert run.states == []
    assert len(emulator.requests) == 1


def test_retries_exhausted_fails_naming_the_batch(emulator: MonkEmulator, tmp_path: Path) -> None:
    emulator.fail_from = (2, Rule(status=502))
    data = interleaved_input({"s": 12_000}, state_every=1000)
    config = base_config(emulator, max_in_flight=1, max_retries=2)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert run.returncode != 0
    assert "did not accept batch #2" in run.stderr
    assert "after 3 attempt(s)" in run.stderr
    assert len(emulator.requests) == 4
    assert run.states == [data.keys_before_state[4][0]]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_a_batch_keeps_failing_exits_non_zero_without_state(
    emulator: MonkEmulator, tmp_path: Path, signum: int
) -> None:
    emulator.fail_from = (1, Rule(status=503))
    config = base_config(emulator, max_retries=20, retry_backoff_seconds=0.2)
    process = start_target(config, tmp_path)
    process.stdin.write(full_batch_then().encode())
    process.stdin.flush()
    wait_until(lambda: len(emulator.requests) >= 2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert out == b""
    assert b"not yet accepted" in err


def test_signal_after_everything_was_accepted_exits_zero(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    process = start_target(base_config(emulator), tmp_path)
    process.stdin.write(full_batch_then().replace(json.dumps(LATE_STATE) + "\n", "").encode())
    process.stdin.flush()
    first_line = process.stdout.readline()
    assert json.loads(first_line) == GOOD_STATE["value"]
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out == b""


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"type": "RECORD", "stream": "s", "record": [1, 2]}, "record not an object"),
        ({"type": "RECORD", "stream": "s"}, "record"),
        ({"type": "ACTIVATE_VERSION", "stream": "other", "version": 1}, "'other'"),
        ({"type": "ACTIVATE_VERSION", "stream": "s"}, "version"),
        (
            {"type": "BATCH", "stream": "other", "encoding": {"format": "jsonl"}, "manifest": []},
            "'other'",
        ),
        (
            {"type": "BATCH", "stream": "s", "encoding": {"format": "csv"}, "manifest": ["x"]},
            "'csv'",
        ),
        ({"type": "BATCH", "stream": "s", "encoding": {"format": "jsonl"}}, "manifest"),
        ({"type": "SNAPSHOT", "stream": "s"}, "Unknown Singer message type 'SNAPSHOT'"),
    ],
    ids=[
        "record-not-object",
        "record-missing",
        "activate-unknown-stream",
        "activate-no-version",
        "batch-unknown-stream",
        "batch-unknown-format",
        "batch-no-manifest",
        "unknown-type",
    ],
)
@pytest.mark.parametrize("settings", [{}, {"validate_records": True}], ids=["fast", "sdk"])
def test_every_message_takes_effect_or_fails_the_run(
    emulator: MonkEmulator, tmp_path: Path, message: dict, needle: str, settings: dict
) -> None:
    run = run_target(
        base_config(emulator, **settings), full_batch_then(message), tmp_path, emulator
    )
    assert_stopped_at_the_bad_line(run, emulator, needle)
    failures = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    assert len(failures) == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
