"""Run (in-process): when batches are sent, when STATE is written, how a run ends.

The run is driven as the target drives it (streams, runs of records, STATE,
ticks, the end) and posts over HTTP to the emulator; STATE lines are read from this
process's stdout. scripts/test runs these again with 1 and 8 batches in flight.
"""

from __future__ import annotations

import json
import logging
import typing as t
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from target_monk.errors import DeliveryFailedError, InvalidRecordError
from target_monk.run.run import Run
from target_monk.settings import Settings
from testkit.messages import record_message, schema_message
from testkit.processes import base_config, wait_until

pytestmark = pytest.mark.in_flight  # rerun with 1 and 8 batches in flight

SCHEMA = schema_message("s")["schema"]


def run_for(emulator: MonkEmulator, tmp_path: Path, **config: t.Any) -> Run:
    paths = {"dead_letter_path": tmp_path / "dead.jsonl", "dry_run_path": tmp_path / "dry.jsonl"}
    return Run(Settings.from_config(base_config(emulator, **paths, **config)))


def rows(stream: str, ids: t.Iterable[int], **changes: t.Any) -> list[dict]:
    return [record_message(stream, i, **changes)["record"] for i in ids]


def states(capfd: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capfd.readouterr().out.splitlines()]


def request_keys(emulator: MonkEmulator) -> list[list[str]]:
    return [sorted(r.keys) for r in emulator.accepted_requests()]


def test_full_batches_go_at_once_the_rest_at_the_end_state_after_acceptance(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_for(emulator, tmp_path, batch_size_rows=3)
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, rows("s", range(4)))
    run.state_received({"n": 4})
    run.add_records(buffer, rows("s", range(4, 7)))
    wait_until(lambda: len(emulator.accepted_requests()) == 2)
    assert [r.count for r in emulator.accepted_requests()] == [3, 3]
    run.finish()
    assert [r.count for r in emulator.accepted_requests()] == [3, 3, 1]
    assert emulator.held_keys() == {f"s:{i}" for i in range(7)}
    assert states(capfd) == [{"n": 4}]


def test_a_partial_batch_holding_back_state_follows_a_full_one_out(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_for(emulator, tmp_path, batch_size_rows=3)
    a, b = (run.open_stream(s, ["id"], SCHEMA) for s in ("a", "b"))
    run.add_records(b, rows("b", [1]))
    run.state_received({"n": 1})
    run.add_records(a, rows("a", range(3)))
    wait_until(lambda: len(emulator.accepted_requests()) == 2)
    assert sorted(request_keys(emulator)) == [["a:0", "a:1", "a:2"], ["b:1"]]
    wait_until(lambda: capfd.readouterr().out == '{"n":1}\n')
    run.finish()


def test_ticks_send_partial_batches_older_than_the_flush_interval(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_for(emulator, tmp_path, flush_interval_seconds=0.01)
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, rows("s", [1, 2]))
    run.state_received({"n": 2})

    def tick() -> object:
        run.tick()
        return emulator.accepted_requests()

    wait_until(tick)
    wait_until(lambda: capfd.readouterr().out == '{"n":2}\n')
    run.finish()
    assert [r.count for r in emulator.accepted_requests()] == [2]


def test_buffers_past_the_cap_send_the_largest(emulator: MonkEmulator, tmp_path: Path) -> None:
    run = run_for(emulator, tmp_path, max_buffered_events=1500)
    a, b, c = (run.open_stream(s, ["id"], SCHEMA) for s in "abc")
    run.add_records(c, rows("c", range(100)))
    run.add_records(a, rows("a", range(700)))
    assert not emulator.requests  # 800 buffered, checked after 1,000 records
    run.add_records(b, rows("b", range(900)))  # 1,700 buffered: b goes, 800 stay
    wait_until(lambda: emulator.accepted_requests())
    assert [r.count for r in emulator.accepted_requests()] == [900]
    run.finish()
    assert sorted(r.count for r in emulator.accepted_requests()) == [100, 700, 900]


def test_a_repeated_schema_sends_the_replaced_buffer_first(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    """Issue #19's first finding: the new sink's full batch went out before the old
    sink's partial one, and Monk kept the older version of s:1."""
    run = run_for(emulator, tmp_path, batch_size_rows=2, max_in_flight=1)
    first = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(first, rows("s", [1], tokens=1))
    second = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(second, rows("s", [1, 3], tokens=2))
    run.finish()
    assert request_keys(emulator) == [["s:1"], ["s:1", "s:3"]]
    assert emulator.events["s:1"]["properties"]["tokens"] == 2


def test_an_invalid_record_fails_or_is_dead_lettered(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    bad = rows("s", [2], timestamp="yesterday")
    run = run_for(emulator, tmp_path)
    buffer = run.open_stream("s", ["id"], SCHEMA)
    with pytest.raises(InvalidRecordError, match=r"stream 's' .*key 2.*field 'timestamp'"):
        run.add_records(buffer, [*rows("s", [1]), *bad])

    run = run_for(emulator, tmp_path, on_invalid_record="dead_letter")
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, [*rows("s", [1]), *bad, *rows("s", [3])])
    run.finish()
    assert emulator.held_keys() == {"s:1", "s:3"}
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["key"], d["field"], d["record"]) for d in letters] == [("2", "timestamp", bad[0])]
    assert run.log_summary()["dead_lettered"] == 1


def test_a_failed_run_writes_no_state_after_and_says_why_in_one_line(
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.fail_from = (2, Rule(status=400, code="INVALID"))
    run = run_for(emulator, tmp_path, batch_size_rows=2, max_in_flight=1)
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, rows("s", [1, 2]))
    run.state_received({"n": 2})
    run.add_records(buffer, rows("s", [3, 4]))
    run.state_received({"n": 4})
    with pytest.raises(DeliveryFailedError) as failure:
        run.finish()
    with caplog.at_level(logging.INFO, logger="target-monk"):
        run.fail(failure.value)
    assert states(capfd) == [{"n": 2}]
    failed = [r.message for r in caplog.records if r.message.startswith("target-monk failed:")]
    assert len(failed) == 1
    assert "HTTP 400 INVALID" in failed[0]
    assert emulator.held_keys() == {"s:1", "s:2"}


@pytest.mark.parametrize("moment", ["waiting for batches", "saying why", "after"])
def test_a_signal_while_failing_adds_no_second_line(
    moment: str,
    emulator: MonkEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the chaos suite: a SIGINT right after a failed run's summary printed
    `Received signal 2: stopping...` after its `target-monk failed:` line (seed 437924,
    scenario 258), and, once that was fixed, a SIGINT landing while the failure line
    was being written printed it twice (seed 2026, scenario 16). The signal handler
    runs in the reading thread, between any two steps of `fail`: it is called here at
    each moment a signal can land."""
    emulator.fail_from = (1, Rule(status=400, code="INVALID"))
    run = run_for(emulator, tmp_path, batch_size_rows=2, max_in_flight=1)
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, rows("s", [1, 2, 3]))
    codes: list[int] = []

    def exit_now(code: int) -> t.NoReturn:
        codes.append(code)
        raise SystemExit(code)

    def signal_now(*_: object, **__: object) -> None:
        run.on_signal(2, exit_now)

    class SignalWhileSaying(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("target-monk failed:"):
                signal_now()

    if moment == "waiting for batches":
        monkeypatch.setattr(run.delivery, "wait_for_running", signal_now)
    if moment == "saying why":
        logging.getLogger("target-monk").addHandler(SignalWhileSaying())
    with caplog.at_level(logging.INFO, logger="target-monk"):
        with pytest.raises(DeliveryFailedError) as failure:
            run.finish()
        try:
            run.fail(failure.value)
            if moment == "after":
                signal_now()
        except SystemExit:
            pass
        finally:
            logging.getLogger("target-monk").handlers.clear()
    messages = [r.message for r in caplog.records]
    assert len([m for m in messages if m.startswith("target-monk failed:")]) == 1
    assert len([m for m in messages if m.startswith("target-monk summary:")]) == 1
    assert not [m for m in messages if m.startswith("Received signal")]
    # Exit 1: from the handler if fail() was still waiting, else from the failed run.
    assert codes == ([1] if moment == "waiting for batches" else [])


def test_a_dry_run_sends_nothing_and_writes_no_state(
    emulator: MonkEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_for(emulator, tmp_path, dry_run=True, batch_size_rows=2)
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, rows("s", range(3)))
    run.state_received({"n": 3})
    run.finish()
    assert not emulator.requests
    assert states(capfd) == []
    bodies = [json.loads(line) for line in (tmp_path / "dry.jsonl").read_text().splitlines()]
    assert [len(body["events"]) for body in bodies] == [2, 1]


def test_deletes_are_never_usage_and_are_reported(
    emulator: MonkEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A log-based tap's deletes: with the key only (PostgreSQL's default replica
    identity) and with the whole row (REPLICA IDENTITY FULL)."""
    deleted_path = tmp_path / "deleted.jsonl"
    run = run_for(emulator, tmp_path, deleted_records_path=str(deleted_path))
    buffer = run.open_stream("s", ["id"], SCHEMA)
    run.add_records(buffer, rows("s", [1, 2, 3]))
    key_only = {"id": 1, "_sdc_deleted_at": "2026-03-16T00:00:00Z"}
    whole_row = {**rows("s", [2])[0], "_sdc_deleted_at": "2026-03-16T00:00:01Z"}
    run.add_records(buffer, [key_only, whole_row, *rows("s", [3], tokens=99)])
    run.state_received({"n": 6})
    with caplog.at_level(logging.INFO, logger="target-monk"):
        run.finish()
    assert emulator.held_keys() == {"s:1", "s:2", "s:3"}  # Monk keeps deleted usage
    assert emulator.events["s:3"]["properties"]["tokens"] == 99  # later updates billed
    assert states(capfd) == [{"n": 6}]  # STATE keeps moving
    letters = [json.loads(line) for line in deleted_path.read_text().splitlines()]
    assert [(d["stream"], d["key"], d["deleted_at"]) for d in letters] == [
        ("s", "s:1", "2026-03-16T00:00:00Z"),
        ("s", "s:2", "2026-03-16T00:00:01Z"),
    ]
    assert letters[0]["event"] is None
    assert letters[1]["event"] == emulator.events["s:2"]  # the event billed for the row
    summary = run.log_summary()
    assert (summary["deleted"], summary["streams"]["s"]["deleted"]) == (2, 2)
    assert "2 deleted source rows were set aside" in caplog.text


def test_deletes_fail_the_run_when_asked(emulator: MonkEmulator, tmp_path: Path) -> None:
    run = run_for(emulator, tmp_path, on_deleted_record="fail")
    buffer = run.open_stream("s", ["id"], SCHEMA)
    with pytest.raises(InvalidRecordError, match=r"key 1\).*_sdc_deleted_at.*on_deleted_record"):
        run.add_records(buffer, [{"id": 1, "_sdc_deleted_at": "2026-03-16T00:00:00Z"}])
