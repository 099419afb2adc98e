"""MonkClient against the emulator: every status class, retries, Retry-After, no key leaks."""

from __future__ import annotations

import json
import logging
import time

import pytest

from target_monk.emulator import MonkEmulator, Rule
from target_monk.errors import MonkAuthError, MonkRejectedError, MonkUnavailableError
from target_monk.monk.events import MonkClient, encode_batch, encode_in_parts
from target_monk.monk.http import MAX_RETRY_AFTER_SECONDS, Retries
from testkit.postgres import free_port
from testkit.processes import API_KEY

EVENT = {
    "externalCustomerId": "cus_1",
    "eventName": "api_call",
    "timestamp": "2026-03-15T10:30:00Z",
    "idempotencyKey": "k1",
}
BODY = encode_batch([EVENT])


def client_for(emulator: MonkEmulator, key: str = API_KEY, **options) -> MonkClient:
    options = {
        "timeout": 2.0,
        "max_retries": 3,
        "backoff_seconds": 0.01,
        "max_wait_seconds": 60.0,
        **options,
    }
    return MonkClient(emulator.url, key, **options)


def test_accepted_batch_returns_receipt(emulator: MonkEmulator) -> None:
    receipt = client_for(emulator).send_batch(BODY, "batch #1", 1)
    assert receipt.count == 1
    assert receipt.request_id.startswith("req_")
    assert receipt.attempts == 1
    assert emulator.held_keys() == {"k1"}


@pytest.mark.parametrize(
    "rule",
    [
        Rule(status=500),
        Rule(status=502),
        Rule(status=503),
        Rule(status=429),
        Rule(drop=True),
        Rule(delay=1.0),
        Rule(cut=True),
    ],
    ids=["500", "502", "503", "429", "dropped", "timeout", "cut-off-answer"],
)
def test_transient_failures_are_retried(emulator: MonkEmulator, rule: Rule) -> None:
    emulator.script[1] = rule
    emulator.script[2] = rule
    receipt = client_for(emulator, timeout=0.5).send_batch(BODY, "batch #1", 1)
    assert receipt.attempts == 3
    assert emulator.held_keys() == {"k1"}
    assert emulator.writes["k1"] >= 1


def test_an_answer_cut_off_is_retried_and_named_with_the_batch(emulator: MonkEmulator) -> None:
    """Issue #19's second finding: the answer cut after its headers (Monk had stored the
    events) was a failure naming no batch; it is retried, and named if retries run out."""
    emulator.fail_from = (1, Rule(cut=True))
    with pytest.raises(MonkUnavailableError) as info:
        client_for(emulator, max_retries=1).send_batch(BODY, "batch #7", 1)
    assert "batch #7 after 2 attempt(s)" in str(info.value)
    assert "the answer was cut off" in str(info.value)
    assert emulator.writes["k1"] == 2  # stored each time: re-sending is harmless


def test_retry_after_is_honoured(emulator: MonkEmulator) -> None:
    emulator.script[1] = Rule(status=429, retry_after="1")
    started = time.monotonic()
    receipt = client_for(emulator).send_batch(BODY, "batch #1", 1)
    assert receipt.attempts == 2
    assert time.monotonic() - started >= 1.0


def test_retries_are_bounded(emulator: MonkEmulator) -> None:
    emulator.fail_from = (1, Rule(status=503))
    with pytest.raises(MonkUnavailableError, match=r"batch #4 after 4 attempt\(s\).*HTTP 503"):
        client_for(emulator, max_retries=3).send_batch(BODY, "batch #4", 1)
    assert len(emulator.requests) == 4


def test_zero_retries_means_one_attempt(emulator: MonkEmulator) -> None:
    emulator.fail_from = (1, Rule(status=500))
    with pytest.raises(MonkUnavailableError):
        client_for(emulator, max_retries=0).send_batch(BODY, "batch #1", 1)
    assert len(emulator.requests) == 1


@pytest.mark.parametrize("status", [400, 413, 422])
def test_rejections_are_not_retried_and_show_monks_error(
    emulator: MonkEmulator, status: int
) -> None:
    emulator.script[1] = Rule(status=status, code="SOME_CODE")
    with pytest.raises(MonkRejectedError) as info:
        client_for(emulator).send_batch(BODY, "batch #9", 1)
    assert len(emulator.requests) == 1
    assert info.value.status == status
    assert f"HTTP {status} SOME_CODE" in str(info.value)
    assert "requestId req_scripted" in str(info.value)
    assert "batch #9" in str(info.value)


def test_validation_error_envelope_from_strict_emulator(emulator: MonkEmulator) -> None:
    bad = encode_batch([EVENT, {**EVENT, "customerId": "6f1c2a1e-93a4-4a51-9d1c-2b0c6f9d7e10"}])
    with pytest.raises(MonkRejectedError) as info:
        client_for(emulator).send_batch(bad, "batch #1", 2)
    assert info.value.status == 422
    assert info.value.code == "VALIDATION_ERROR"
    assert "exactly one" in info.value.message
    assert emulator.held_keys() == set()


def test_too_many_events_is_413(emulator: MonkEmulator) -> None:
    body = encode_batch([{**EVENT, "idempotencyKey": f"k{i}"} for i in range(10_001)])
    with pytest.raises(MonkRejectedError, match="HTTP 413 BATCH_TOO_LARGE"):
        client_for(emulator).send_batch(body, "batch #1", 10_001)


@pytest.mark.parametrize("kind", ["unknown", "read_only"])
def test_refused_key_stops_at_once_without_printing_it(
    emulator: MonkEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = "mk_live_" + "f" * 48
    if kind == "read_only":
        emulator.read_only_keys.add(key)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MonkAuthError) as info:
        client_for(emulator, key=key).send_batch(BODY, "batch #1", 1)
    assert "API key refused" in str(info.value)
    assert "401" in str(info.value) if kind == "unknown" else "403" in str(info.value)
    assert len(emulator.requests) == 1
    assert key not in str(info.value)
    assert key not in repr(client_for(emulator, key=key))
    assert key not in caplog.text


def test_key_absent_from_retry_logs_and_errors(
    emulator: MonkEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.fail_from = (1, Rule(drop=True))
    with pytest.raises(MonkUnavailableError) as info:
        client_for(emulator).send_batch(BODY, "batch #1", 1)
    assert "Retrying batch #1" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in str(info.value)


def test_decimal_and_unicode_bodies_round_trip(emulator: MonkEmulator) -> None:
    import decimal

    event = {**EVENT, "properties": {"cost": decimal.Decimal("0.10"), "city": "Zürich"}}
    client_for(emulator).send_batch(encode_batch([event]), "batch #1", 1)
    assert json.loads(encode_batch([event]))["events"][0]["properties"]["cost"] == 0.1
    assert emulator.events["k1"]["properties"] == {"cost": 0.1, "city": "Zürich"}


@pytest.mark.parametrize("max_bytes", [1_000, 20_000, 10**9])
def test_encode_in_parts_keeps_every_event_within_the_byte_cap(max_bytes: int) -> None:
    events = [
        {**EVENT, "idempotencyKey": f"k{i}", "properties": {"n": "x" * (i % 50)}}
        for i in range(1000)
    ]
    parts = encode_in_parts(events, max_bytes)
    bodies = [body for _, body in parts]
    decoded = [e for body in bodies for e in json.loads(body)["events"]]
    assert decoded == events == [e for part, _ in parts for e in part]
    assert all(len(body) <= max_bytes for body in bodies)
    if max_bytes == 10**9:
        assert len(bodies) == 1
    else:
        assert len(bodies) >= sum(len(b) for b in bodies) / max_bytes


def test_an_event_larger_than_the_cap_goes_alone() -> None:
    big = {**EVENT, "properties": {"blob": "x" * 5000}}
    parts = encode_in_parts([EVENT, big, EVENT], 2000)
    assert [len(json.loads(body)["events"]) for _, body in parts] == [1, 1, 1]


def test_transport_failures_are_classified_retried_or_not_and_named(
    emulator: MonkEmulator,
) -> None:
    """A typo in the host fails at once, naming the problem; so does TLS spoken to a
    plain-HTTP server; a refused connection is retried, then named with its batch.
    Each failure names the URL (issue #18: it named neither host nor cause)."""
    cases = {
        "http://monk-typo.invalid:8787": ("does not resolve (DNS)", 1),
        emulator.url.replace("http://", "https://"): ("TLS failed", 1),
        f"http://127.0.0.1:{free_port()}": ("connection refused", 3),
    }
    for url, (reason, attempts) in cases.items():
        client = MonkClient(
            url, API_KEY, timeout=2, max_retries=2, backoff_seconds=0.01, max_wait_seconds=1
        )
        with pytest.raises(MonkUnavailableError) as info:
            client.send_batch(BODY, "batch #3", 1)
        message = str(info.value)
        assert "batch #3" in message
        assert reason in message
        assert client.url in message
        assert (f"after {attempts} attempt(s)" in message) == (attempts > 1)
    assert emulator.requests == []


def test_retry_waits_are_capped() -> None:
    retries = Retries(max_retries=5, backoff_seconds=1, max_wait_seconds=60)
    assert all(retries.wait(n, None) <= 60 for n in range(1, 21))
    assert retries.wait(20, None) >= 30  # jittered between half and all of the cap
    assert retries.wait(1, 120.0) == 120.0  # Monk's Retry-After, beyond the cap
    assert retries.wait(1, 10_000.0) == MAX_RETRY_AFTER_SECONDS == 300
