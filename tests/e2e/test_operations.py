"""Operating it: dead letters, dry run, run summary and receipt, URL hardening."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from target_monk.errors import ConfigError, TargetMonkError
from testkit.messages import interleaved_input, record_message
from testkit.processes import API_KEY, base_config, run_in_process, run_target


def with_bad_rows(total: int, bad: dict[int, dict]) -> tuple[str, dict, set[str]]:
    """One stream of `total` records, some changed; returns text, last state, good keys."""
    data = interleaved_input({"s": total}, state_every=min(1000, total))
    good: set[str] = set()
    for message in data.messages:
        if message["type"] == "RECORD":
            row = message["record"]["id"]
            if row in bad:
                message.update(record_message("s", row, **bad[row]))
            else:
                good.add(f"s:{row}")
    return data.text(), data.keys_before_state[-1][0], good


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dead_letter_isolates_bad_rows_and_a_rejected_event(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    bad: dict[int, dict] = {
        10: {"external_customer_id": None},
        5_000: {"event_name": ""},
        11_999: {"timestamp": "2099-01-01T00:00:00Z"},
        7_777: {"external_customer_id": "cus_unknown"},
    }
    emulator.unknown_customers.add("cus_unknown")
    text, last_state, good = with_bad_rows(12_000, bad)
    dead = tmp_path / "dead.jsonl"
    config = base_config(emulator, on_invalid_record="dead_letter", dead_letter_path=str(dead))
    run = run_target(config, text, tmp_path, emulator)

    assert run.returncode == 0, run.stderr
    good.discard("s:7777")
    assert len(good) == 11_996
    assert emulator.held_keys() == good
    letters = read_jsonl(dead)
    assert sorted(entry["key"] for entry in letters) == ["10", "11999", "5000", "s:7777"]
    by_key = {entry["key"]: entry for entry in letters}
    assert by_key["10"]["reason"].startswith("neither")
    assert by_key["10"]["record"]["id"] == 10
    assert by_key["5000"]["field"] == "event_name"
    assert "future" in by_key["11999"]["reason"]
    assert by_key["s:7777"]["stage"] == "monk"
    assert "422 VALIDATION_ERROR" in by_key["s:7777"]["reason"]
    assert "unknown customer" in by_key["s:7777"]["reason"]
    assert by_key["s:7777"]["event"]["externalCustomerId"] == "cus_unknown"
    assert run.states[-1] == last_state
    extra = len(emulator.requests) - 3
    assert 0 < extra <= 2 * math.ceil(math.log2(5000))
    assert f"4 records or events were dead-lettered to {dead}" in run.stderr
    assert API_KEY not in dead.read_text() + run.stderr


def test_fail_on_dead_letter_exits_non_zero(emulator: MonkEmulator, tmp_path: Path) -> None:
    text, last_state, _ = with_bad_rows(100, {5: {"event_name": ""}})
    config = base_config(
        emulator,
        on_invalid_record="dead_letter",
        dead_letter_path=str(tmp_path / "dead.jsonl"),
        fail_on_dead_letter=True,
    )
    run = run_target(config, text, tmp_path, emulator)
    assert run.returncode != 0
    assert "fail_on_dead_letter" in run.stderr
    assert run.states[-1] == last_state  # dead letters are written down, not lost
    assert len(emulator.held_keys()) == 99


def test_dry_run_sends_nothing_and_writes_no_state(
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = interleaved_input({"s": 12_000}, state_every=1000)
    bodies_path = tmp_path / "bodies.jsonl"
    config = base_config(emulator, dry_run=True, dry_run_path=str(bodies_path))
    with caplog.at_level(logging.INFO, logger="target-monk"):
        states = run_in_process(config, data.text(), capfd)
    assert emulator.requests == []
    assert states == []
    bodies = read_jsonl(bodies_path)
    assert [len(body["events"]) for body in bodies] == [5000, 5000, 2000]
    keys = {event["idempotencyKey"] for body in bodies for event in body["events"]}
    assert keys == data.keys_before_state[-1][1]
    assert API_KEY not in bodies_path.read_text() + caplog.text
    assert "Dry run: nothing was sent" in caplog.text


def test_dry_run_still_fails_on_an_invalid_record(emulator: MonkEmulator, tmp_path: Path) -> None:
    text, _, _ = with_bad_rows(100, {5: {"timestamp": None}})
    config = base_config(emulator, dry_run=True, dry_run_path=str(tmp_path / "b.jsonl"))
    run = run_target(config, text, tmp_path, emulator)
    assert run.returncode != 0
    assert "field 'timestamp'" in run.stderr


def test_summary_progress_and_receipt(
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = interleaved_input({"a": 6000, "b": 1500}, state_every=1000)
    receipt_path = tmp_path / "receipt.json"
    config = base_config(
        emulator, summary_path=str(receipt_path), progress_every_batches=2, batch_size_rows=1000
    )
    with caplog.at_level(logging.INFO, logger="target-monk"):
        states = run_in_process(config, data.text(), capfd)
    assert states[-1] == data.keys_before_state[-1][0]
    assert "Progress: 2 requests accepted" in caplog.text
    assert "Summary for stream 'a': 6000 records read, 6000 events accepted" in caplog.text
    summary = summary_of(caplog.text)
    assert summary["events_accepted"] == 7500
    assert summary["streams"]["b"]["records_read"] == 1500
    assert summary["streams"]["a"]["requests_accepted"] == 6
    assert summary["streams"]["a"]["bytes"] > 0
    assert (summary["requests"], summary["retries"]) == (len(emulator.requests), 0)

    receipt = json.loads(receipt_path.read_text())
    usage = receipt["usage"]
    assert sum(u["events"] for u in usage) == 7500
    sent = [e for e in emulator.events.values()]
    for entry in usage:
        mine = [
            e
            for e in sent
            if e["externalCustomerId"] == entry["externalCustomerId"]
            and e["eventName"] == entry["eventName"]
        ]
        assert entry["events"] == len(mine)
        assert entry["sums"]["tokens"] == sum(e["properties"]["tokens"] for e in mine)
        assert "id" not in entry["sums"]  # a key property, never summed


def summary_of(log: str) -> dict:
    line = next(li for li in log.splitlines() if "target-monk summary: " in li)
    return json.loads(line.split("target-monk summary: ", 1)[1])


def test_the_summary_of_a_failed_run_counts_every_request(
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue #18: after 6 attempts the summary said `0 retries, 0 requests`."""
    emulator.fail_from = (2, Rule(status=503))
    data = interleaved_input({"s": 12}, state_every=12)
    # One batch in flight: the first batch is the first request, accepted before the rest.
    config = base_config(
        emulator, batch_size_rows=5, max_retries=3, retry_backoff_seconds=0.01, max_in_flight=1
    )
    with caplog.at_level(logging.INFO, logger="target-monk"), pytest.raises(TargetMonkError):
        run_in_process(config, data.text(), capfd)
    summary = summary_of(caplog.text)
    assert summary["records_read"] == 12
    assert summary["requests"] == len(emulator.requests) > 4
    assert summary["streams"]["s"]["requests_accepted"] == len(emulator.accepted_requests()) == 1
    assert summary["events_accepted"] == 5
    # every batch's first request is not a retry; at most 3 batches were sent
    assert len(emulator.requests) - 3 <= summary["retries"] < len(emulator.requests)
    assert "Summary for stream 's': 12 records read, 5 events accepted" in caplog.text
    assert f"{summary['requests']} requests (1 accepted, {summary['retries']} retries)" in (
        caplog.text
    )


def test_metrics_time_monks_answers_and_count_accepted_events(
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue #18: singer-sdk's batch_processing_time timed the hand-over (~0.3 ms), not
    Monk's answer; no metric counted accepted events or timed requests."""
    emulator.script[1] = Rule(latency=0.3)  # Monk takes 0.3 s to answer the first request
    emulator.script[2] = Rule(status=503)  # and the second is retried once
    data = interleaved_input({"a": 2500, "b": 1000}, state_every=500)
    config = base_config(emulator, batch_size_rows=1000, max_in_flight=1)
    with caplog.at_level(logging.INFO):
        run_in_process(config, data.text(), capfd)
    points = [
        json.loads(r.getMessage().split("METRIC: ", 1)[1])
        for r in caplog.records
        if r.name == "singer_sdk.metrics"
    ]
    requests = [p for p in points if p["metric"] == "http_request_duration"]
    assert len(requests) == len(emulator.accepted_requests()) == 5
    assert max(p["value"] for p in requests) >= 0.3
    assert {p["tags"]["http_status_code"] for p in requests} == {202}
    assert {p["tags"]["endpoint"] for p in requests} == {"/v1/events/batch"}
    accepted = [p for p in points if p["metric"] == "events_accepted"]
    assert sum(p["value"] for p in accepted if p["tags"]["stream"] == "a") == 2500
    assert sum(p["value"] for p in accepted if p["tags"]["stream"] == "b") == 1000
    batches = [p for p in points if p["metric"] == "batch_processing_time"]
    assert len(batches) == 5  # one per batch, none from singer-sdk's hand-over timer
    assert max(p["value"] for p in batches) >= 0.3
    assert {p["tags"]["status"] for p in batches} == {"succeeded"}
    read = [p for p in points if p["metric"] == "record_count"]  # singer-sdk's: records read
    assert sum(p["value"] for p in read) == 3500


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://events.example.com", False),
        ("http://10.0.0.5:8080", False),
        ("ftp://127.0.0.1", False),
        ("http://127.0.0.1:9", True),
        ("http://localhost:9", True),
        ("http://[::1]:9", True),
        ("https://events-api.monk.com", True),
    ],
)
def test_plain_http_only_to_this_machine(tmp_path: Path, url: str, allowed: bool) -> None:
    from target_monk.settings import check_api_url

    if allowed:
        check_api_url(url)
    else:
        with pytest.raises(ConfigError, match="api_url"):
            check_api_url(url)
    check_api_url("http://events.example.com", allow_insecure_http=True)


def test_insecure_url_refused_at_start_without_printing_the_key(tmp_path: Path) -> None:
    config = {"api_key": API_KEY, "api_url": "http://events.example.com"}
    run = run_target(config, "", tmp_path)
    assert run.returncode != 0
    assert "plain http" in run.stderr
    assert API_KEY not in run.stderr


def test_a_misspelt_setting_is_refused_at_start(emulator: MonkEmulator, tmp_path: Path) -> None:
    """`dryrun: true` (for dry_run) used to send real events and exit 0."""
    data = interleaved_input({"s": 3}, state_every=3)
    run = run_target(base_config(emulator, dryrun=True), data.text(), tmp_path)
    assert run.returncode != 0
    assert "'dryrun' (did you mean 'dry_run'?)" in run.stderr
    assert emulator.requests == []
    assert run.states == []
