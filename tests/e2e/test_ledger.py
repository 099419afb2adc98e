"""The delivery ledger: a row for each event Monk accepted and for nothing else, the
latest version per key, the same bytes as sent on every record path; PostgreSQL for
shards writing at once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import msgspec
import pytest

from target_monk.emulator import MonkEmulator, Rule
from target_monk.proof.command import reconcile
from target_monk.proof.ledger import Ledger
from testkit.messages import interleaved_input, record_message, schema_message
from testkit.postgres import PgCluster
from testkit.processes import base_config, feed, run_target, start_target, wait_until


def ledger_rows(path: Path) -> dict[str, dict]:
    """key -> the event as the ledger has it (parsed), with its requestId."""
    ledger = Ledger(str(path))
    ledger.materialize()
    ledger.close()
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT idempotency_key, event, request_id, customer, day FROM target_monk_ledger"
        ).fetchall()
    return {
        key: {"event": json.loads(event), "request_id": request, "customer": c, "day": day}
        for key, event, request, c, day in rows
    }


def accepted_keys_by_request(emulator: MonkEmulator) -> set[str]:
    return {key for request in emulator.accepted_requests() for key in request.keys}


def test_rows_are_the_accepted_events_as_sent(emulator: MonkEmulator, tmp_path: Path) -> None:
    data = interleaved_input({"a": 3000, "b": 2000}, state_every=500)
    ledger = tmp_path / "ledger.sqlite"
    run = run_target(base_config(emulator, ledger_path=str(ledger)), data.text(), tmp_path)
    assert run.returncode == 0, run.stderr
    rows = ledger_rows(ledger)
    assert set(rows) == emulator.held_keys() == data.keys_before_state[-1][1]
    assert {key: row["event"] for key, row in rows.items()} == emulator.events
    request_ids = {row["request_id"] for row in rows.values()}
    assert len(request_ids) == len(emulator.accepted_requests()) and "" not in request_ids
    assert rows["a:7"]["customer"] == "cus_0" and rows["a:7"]["day"] == "2026-03-15"


def test_a_failed_run_leaves_rows_only_for_accepted_events(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    emulator.fail_from = (3, Rule(status=503))
    data = interleaved_input({"s": 20_000}, state_every=1000)
    ledger = tmp_path / "ledger.sqlite"
    config = base_config(emulator, ledger_path=str(ledger), max_retries=1, max_in_flight=1)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert run.returncode == 1
    assert "target-monk failed:" in run.stderr
    assert set(ledger_rows(ledger)) == emulator.held_keys() == accepted_keys_by_request(emulator)
    assert len(emulator.held_keys()) == 10_000


def test_sigkill_leaves_no_row_for_an_unaccepted_event_and_a_replay_the_latest_versions(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    data = interleaved_input({"s": 20_000}, state_every=1000)
    data.messages.insert(5, record_message("s", 2, tokens=1))  # key s:2 in two versions
    ledger = tmp_path / "ledger.sqlite"
    emulator.fail_from = (3, Rule(gate="held"))  # the kill lands with requests held
    config = base_config(emulator, ledger_path=str(ledger), max_in_flight=2)
    process = start_target(config, tmp_path, stderr=subprocess.DEVNULL)
    feeder = threading.Thread(target=feed, args=(process, data.text().encode()))
    feeder.start()
    wait_until(lambda: len(emulator.accepted_requests()) >= 2, timeout=60)
    wait_until(lambda: len(emulator.requests) >= 3, timeout=60)
    accepted = accepted_keys_by_request(emulator)
    wait_until(lambda: len(ledger_rows(ledger)) == len(accepted), timeout=60)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    feeder.join(timeout=30)
    rows = ledger_rows(ledger)
    assert set(rows) == accepted_keys_by_request(emulator) == accepted
    assert len(rows) == 9_999  # the first batch sends key s:2 once, in its latest version
    assert rows["s:2"]["event"]["properties"]["tokens"] == 1  # the latest version sent

    emulator.fail_from = None
    emulator.gate("held").set()  # the held requests land late: Monk has them, not the ledger
    data.messages.append(record_message("s", 2, tokens=77))  # the row changed meanwhile
    rerun = run_target(base_config(emulator, ledger_path=str(ledger)), data.text(), tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    rows = ledger_rows(ledger)
    assert set(rows) == emulator.held_keys() == data.keys_before_state[-1][1]
    assert rows["s:2"]["event"]["properties"]["tokens"] == 77
    assert {key: row["event"] for key, row in rows.items()} == emulator.events
    ledger_rows(ledger)
    with sqlite3.connect(ledger) as connection:
        runs = connection.execute("SELECT events, first_day, last_day FROM target_monk_ledger_runs")
        assert sorted(runs.fetchall()) == [
            (9_999, "2026-03-15", "2026-03-15"),
            (20_001, *["2026-03-15"] * 2),
        ]


@pytest.mark.parametrize(
    "path_settings",
    [{"validate_records": True}, {"flattening_enabled": True, "flattening_max_depth": 1}],
    ids=["validate_records", "flattening"],
)
def test_the_sdk_path_writes_the_same_rows(
    emulator: MonkEmulator, tmp_path: Path, path_settings: dict
) -> None:
    messages = [schema_message("s")]
    messages += [
        record_message("s", n, timestamp="2026-03-15T10:30:00.5+02:00", tokens=n / 8)
        for n in range(50)
    ]
    text = "".join(json.dumps(m) + "\n" for m in messages)
    rows = {}
    for name, settings in (("fast", {}), ("sdk", path_settings)):
        ledger = tmp_path / f"{name}.sqlite"
        run = run_target(base_config(emulator, ledger_path=str(ledger), **settings), text, tmp_path)
        assert run.returncode == 0, run.stderr
        ledger_rows(ledger)
        with sqlite3.connect(ledger) as connection:
            rows[name] = connection.execute(
                "SELECT idempotency_key, event, event_time, day FROM target_monk_ledger ORDER BY 1"
            ).fetchall()
    assert rows["fast"] == rows["sdk"]
    assert len(rows["fast"]) == 50 and rows["fast"][0][2:] == (
        "2026-03-15T08:30:00.5Z",
        "2026-03-15",
    )


def test_no_ledger_in_a_dry_run_nor_when_off(emulator: MonkEmulator, tmp_path: Path) -> None:
    data = interleaved_input({"s": 10}).text()
    for settings in ({"dry_run": True}, {"ledger": False}):
        run = run_target(base_config(emulator, **settings), data, tmp_path)
        assert run.returncode == 0, run.stderr
        assert not Path("target-monk-ledger.sqlite").exists()


def test_a_ledger_that_cannot_be_opened_fails_the_run_before_sending(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    config = base_config(emulator, ledger_path=str(tmp_path / "missing-dir" / "ledger.sqlite"))
    run = run_target(config, interleaved_input({"s": 10}).text(), tmp_path)
    assert run.returncode == 1
    failures = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    assert len(failures) == 1 and "Cannot open the ledger at" in failures[0], run.stderr
    assert emulator.requests == []


def test_two_shards_write_one_postgres_ledger_at_once(
    emulator: MonkEmulator, tmp_path: Path, pg: PgCluster
) -> None:
    url = f"postgresql://postgres:pw@127.0.0.1:{pg.port}/{pg.database}"
    inputs = {name: interleaved_input({name: 12_000}, state_every=1000) for name in ("a", "b")}
    runs = {}

    def shard(name: str) -> None:
        workdir = tmp_path / name
        workdir.mkdir()
        config = base_config(emulator, ledger_url=url, batch_size_rows=1000)
        runs[name] = run_target(config, inputs[name].text(), workdir)

    threads = [threading.Thread(target=shard, args=(name,)) for name in inputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(run.returncode == 0 for run in runs.values()), [r.stderr for r in runs.values()]
    assert pg.psql("SELECT count(*), sum(events) FROM target_monk_ledger_requests") == "24|24000"
    ledger = Ledger(url)
    assert ledger.materialize() == 24_000
    ledger.close()
    out = pg.psql("SELECT idempotency_key, event FROM target_monk_ledger")
    rows = dict(line.split("|", 1) for line in out.splitlines())
    assert set(rows) == emulator.held_keys()
    assert len(rows) == 24_000
    assert {k: msgspec.json.decode(v) for k, v in rows.items()} == emulator.events
    assert pg.psql("SELECT count(*), sum(events) FROM target_monk_ledger_runs") == "2|24000"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(emulator, ledger_url=url, read_api_url=emulator.url)))
    report = tmp_path / "report.json"
    assert reconcile(["--config", str(config), "--report", str(report)]) == 0
    totals = json.loads(report.read_text())["totals"]
    assert totals == {**dict.fromkeys(totals, 0), "matched": 24_000}


def test_a_ledger_write_that_fails_mid_run_fails_it_before_the_state_past_it(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(str(path)).close()  # the tables, then a disk that fills at the 3rd request
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TRIGGER full AFTER INSERT ON target_monk_ledger_requests "
            "WHEN NEW.seq >= 3 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    data = interleaved_input({"s": 20_000}, state_every=1000)
    config = base_config(emulator, ledger_path=str(path), max_in_flight=1)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert run.returncode == 1
    [failure] = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    assert "ledger at" in failure and "could not record them" in failure
    assert "database or disk is full" in failure
    assert len(emulator.accepted_requests()) >= 3  # Monk has the third batch
    assert run.states[-1] == data.keys_before_state[9][0]  # but no STATE past it
    assert len(ledger_rows(path)) == 10_000
