"""Bad input and signals: a clear error, a non-zero exit, and no STATE past the problem.
The whole command line runs in-process (`run_cli`) but where a signal is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.messages import (
    GOOD_STATE,
    LATE_STATE,
    full_batch_then,
    interleaved_input,
    record_message,
    schema_message,
)
from testkit.processes import API_KEY, base_config, run_cli


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
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    change: dict,
    field: str,
    reason: str,
) -> None:
    bad = record_message("s", 6001, **change)
    after = record_message("s", 6002)
    run = run_cli(base_config(emulator), full_batch_then(bad, after), tmp_path, capfd)
    assert_stopped_at_the_bad_line(
        run, emulator, "stream 's'", "key 6001", f"field '{field}'", reason
    )
    assert "s:6002" not in emulator.held_keys()


def test_malformed_json_line(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    text = full_batch_then('{"type": "RECORD", "stream": "s", "record": {"id": 1', "")
    run = run_cli(base_config(emulator), text, tmp_path, capfd)
    assert_stopped_at_the_bad_line(run, emulator, "Unable to parse")


def test_non_utf8_bytes(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = b'{"type": "RECORD", "stream": "s", "record": {"id": "\xff\xfe"}}\n'
    late = (json.dumps(LATE_STATE) + "\n").encode()
    data = full_batch_then().encode().replace(late, bad + late)
    run = run_cli(base_config(emulator), data, tmp_path, capfd)
    assert_stopped_at_the_bad_line(run, emulator, "not valid UTF-8")


def test_record_before_schema(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    text = full_batch_then(record_message("other", 1))
    run = run_cli(base_config(emulator), text, tmp_path, capfd)
    assert_stopped_at_the_bad_line(run, emulator, "'other'", "before its SCHEMA")


def test_stream_without_keys_refused_at_schema_with_a_fix(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    text = full_batch_then(schema_message("logs", key_properties=()), record_message("logs", 1))
    run = run_cli(base_config(emulator), text, tmp_path, capfd)
    assert_stopped_at_the_bad_line(run, emulator, "'logs'", "idempotency_key_template")


@pytest.mark.parametrize("status", [400, 422])
def test_rejected_batch_fails_the_run_with_monks_error(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str], status: int
) -> None:
    emulator.script[2] = Rule(status=status, code="INVALID_EVENT")
    data = interleaved_input({"s": 12_000}, state_every=1000)
    run = run_cli(base_config(emulator, max_in_flight=1), data.text(), tmp_path, capfd)
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
def test_refused_key_stops_at_once(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str], status: int
) -> None:
    config = base_config(emulator, api_key="mk_live_" + "9" * 48)
    if status == 403:
        emulator.read_only_keys.add(config["api_key"])
    data = interleaved_input({"s": 100}, state_every=10)
    run = run_cli(config, data.text(), tmp_path, capfd)
    assert run.returncode != 0
    assert "API key refused" in run.stderr
    assert f"HTTP {status}" in run.stderr
    assert config["api_key"] not in run.stderr + run.stdout
    assert run.states == []
    assert len(emulator.requests) == 1


def test_retries_exhausted_fails_naming_the_batch(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.fail_from = (2, Rule(status=502))
    data = interleaved_input({"s": 12_000}, state_every=1000)
    config = base_config(emulator, max_in_flight=1, max_retries=2)
    run = run_cli(config, data.text(), tmp_path, capfd)
    assert run.returncode != 0
    assert "did not accept batch #2" in run.stderr
    assert "after 3 attempt(s)" in run.stderr
    assert len(emulator.requests) == 4
    assert run.states == [data.keys_before_state[4][0]]


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
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    message: dict,
    needle: str,
    settings: dict,
) -> None:
    run = run_cli(base_config(emulator, **settings), full_batch_then(message), tmp_path, capfd)
    assert_stopped_at_the_bad_line(run, emulator, needle)
    failures = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    assert len(failures) == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
