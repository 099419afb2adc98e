"""reconcile against the emulator's read API: matches, each kind of difference, the
repair, pending events, pagination, 429 storms, the rate limit, resume, sampling."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from target_monk.emulator import MonkEmulator, Rule
from target_monk.errors import ReconcileError
from target_monk.monk.reads import MonkReader, RateLimit
from target_monk.proof.command import reconcile
from target_monk.proof.ledger import Ledger
from target_monk.proof.reconciler import Reconciler
from testkit.messages import schema_message
from testkit.processes import (
    API_KEY,
    MELTANO,
    ROOT,
    base_config,
    meltano_env,
    run_target,
    wait_until,
)

DAYS = [f"2026-03-{day:02d}" for day in range(1, 11)]
RECONCILE = [sys.executable, "-m", "target_monk", "reconcile"]


def usage_input(rows: int, customers: int) -> str:
    """`rows` events over `customers` customers and the 10 days of DAYS."""
    lines = [schema_message("usage")]
    for n in range(rows):
        record = {
            "id": n,
            "external_customer_id": f"cus_{n % customers}",
            "event_name": "api_call",
            "timestamp": f"{DAYS[n // customers % len(DAYS)]}T{n % 24:02d}:00:00Z",
            "tokens": n % 100 + 0.5,
        }
        lines.append({"type": "RECORD", "stream": "usage", "record": record})
    lines.append({"type": "STATE", "value": {"rows": rows}})
    return "".join(json.dumps(line) + "\n" for line in lines)


def deliver(emulator: MonkEmulator, tmp_path: Path, rows: int = 700, customers: int = 7) -> Path:
    """Run the target (ledger on) and return a config file reconcile reads."""
    config = base_config(
        emulator,
        ledger_path=str(tmp_path / "ledger.sqlite"),
        read_api_url=emulator.url,
        reconcile_settle_seconds=0,
        retry_backoff_seconds=0.01,
    )
    run = run_target(config, usage_input(rows, customers), tmp_path)
    assert run.returncode == 0, run.stderr
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def run_reconcile(config: Path, tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    """reconcile in this process: (exit code, the JSON report, what it printed)."""
    report = tmp_path / "report.json"
    code = reconcile(["--config", str(config), "--report", str(report), *args])
    return code, json.loads(report.read_text()) if report.exists() else {}, ""


def post(emulator: MonkEmulator, events: list[dict]) -> None:
    """Someone else posts these events to Monk (not through target-monk)."""
    answer = requests.post(
        emulator.url + "/v1/events/batch",
        json={"events": events},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text


def test_all_equal_exits_0_with_a_table_per_customer_and_day(
    emulator: MonkEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = deliver(emulator, tmp_path)
    code, report, _ = run_reconcile(config, tmp_path, "--all-rows")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert report["result"] == "match"
    assert report["totals"] == {
        "matched": 700,
        "pending": 0,
        "missing": 0,
        "different": 0,
        "extra": 0,
        "resent": 0,
    }
    assert report["range"] == {"start": "2026-03-01", "end": "2026-03-10"}  # the last run's days
    assert report["customers"] == 7 and report["requests"] == 7
    cells = report["per_customer_day"]
    assert cells["externalCustomerId:cus_3"]["2026-03-04"] == {"matched": 10}
    assert sum(len(days) for days in cells.values()) == 70
    assert "externalCustomerId:cus_3  2026-03-04" in out.out
    assert "Match: Monk holds the 700 events the ledger has" in out.out


def test_a_lost_event_is_missing_and_resending_repairs_it(
    emulator: MonkEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = deliver(emulator, tmp_path)
    lost = emulator.events["usage:15"]
    emulator.delete(["usage:15", "usage:16"])
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 1
    assert report["totals"]["missing"] == 2
    assert {m["key"] for m in report["missing"]} == {"usage:15", "usage:16"}
    assert report["missing"][0] == {
        "key": "usage:15",
        "customer_field": "externalCustomerId",
        "customer": "cus_1",
        "day": "2026-03-03",
    }
    assert "2 missing" in capsys.readouterr().out

    writes_before = sum(emulator.writes.values())
    code, report, _ = run_reconcile(config, tmp_path, "--resend-missing")
    assert code == 1  # found missing; resent: the next reconcile proves them
    assert report["totals"]["resent"] == 2 and report["totals"]["missing"] == 0
    assert emulator.events["usage:15"] == lost
    assert sum(emulator.writes.values()) == writes_before + 2
    resend = emulator.requests[-1]
    assert sorted(resend.keys) == ["usage:15", "usage:16"]

    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 0 and report["totals"]["matched"] == 700


def test_an_extra_event_is_reported_and_not_resent(emulator: MonkEmulator, tmp_path: Path) -> None:
    config = deliver(emulator, tmp_path)
    extra = {
        "externalCustomerId": "cus_2",
        "eventName": "api_call",
        "timestamp": "2026-03-05T12:00:00Z",
        "idempotencyKey": "manual-1",
    }
    post(emulator, [extra])
    writes = dict(emulator.writes)
    code, report, _ = run_reconcile(config, tmp_path, "--resend-missing")
    assert code == 1
    assert report["extra"] == [
        {
            "key": "manual-1",
            "customer_field": "externalCustomerId",
            "customer": "cus_2",
            "day": "2026-03-05",
        }
    ]
    assert report["totals"]["matched"] == 700
    assert dict(emulator.writes) == writes  # nothing sent


def test_a_changed_event_is_different_naming_the_field(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    config = deliver(emulator, tmp_path)
    changed = {**emulator.events["usage:20"], "properties": {"id": 20, "tokens": 99}}
    moved = {**emulator.events["usage:21"], "externalCustomerId": "cus_5"}  # cus_0 -> cus_5
    post(emulator, [changed, moved])
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 1
    different = {d["key"]: d["fields"] for d in report["different"]}
    assert different == {"usage:20": ["properties"], "usage:21": ["externalCustomerId"]}
    assert report["totals"]["missing"] == report["totals"]["extra"] == 0
    assert report["totals"]["matched"] == 698


def test_events_inside_the_settle_time_are_pending_not_missing(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    config = deliver(emulator, tmp_path)
    emulator.settle_seconds = 3600  # Monk has not processed them yet
    settings = json.loads(config.read_text())
    settings["reconcile_settle_seconds"] = 900
    config.write_text(json.dumps(settings))
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 0
    assert report["totals"]["pending"] == 700 and report["totals"]["missing"] == 0
    settings["reconcile_settle_seconds"] = 0  # past the settle time: missing
    config.write_text(json.dumps(settings))
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 1 and report["totals"]["missing"] == 700


def test_pages_and_a_429_storm(emulator: MonkEmulator, tmp_path: Path) -> None:
    config = deliver(emulator, tmp_path, rows=2600, customers=2)  # 1,300 each: two pages
    emulator.read_faults.extend(
        [
            Rule(status=429, retry_after="0"),
            Rule(status=429),
            Rule(status=503),
            Rule(status=429, retry_after="1"),
            Rule(status=429),
        ]
    )  # five failures in a row: max_retries (5) is still enough
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 0
    assert report["totals"]["matched"] == 2600
    assert report["requests"] == 4 + 5 and report["throttled"] == 4
    assert not emulator.read_faults


def read_client(emulator: MonkEmulator, limit: RateLimit, retries: int = 5) -> MonkReader:
    return MonkReader(
        emulator.url,
        API_KEY,
        limit=limit,
        timeout=5,
        max_retries=retries,
        backoff_seconds=0.01,
        max_wait_seconds=0.05,
    )


def test_the_request_rate_never_passes_the_limit(emulator: MonkEmulator, tmp_path: Path) -> None:
    deliver(emulator, tmp_path, rows=300, customers=60)
    emulator.read_limit = (20, 2.0)  # Monk's 100 a minute, scaled down for the test
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    reader = read_client(emulator, RateLimit(20, 2.0))
    report = Reconciler(ledger, reader, 0).run(dt.date(2026, 3, 1), dt.date(2026, 3, 10))
    ledger.close()
    assert report.totals()["matched"] == 300 and not report.differs
    assert reader.requests == 60 and reader.throttled == 0
    assert emulator.max_reads_in_window() <= 20


def test_the_emulator_enforces_the_limit_with_retry_after(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    deliver(emulator, tmp_path, rows=100, customers=10)
    emulator.read_limit = (5, 1.0)
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    reader = read_client(emulator, RateLimit(1000, 1.0))  # a client that ignores the limit
    report = Reconciler(ledger, reader, 0).run(dt.date(2026, 3, 1), dt.date(2026, 3, 10))
    ledger.close()
    assert report.totals()["matched"] == 100
    assert reader.throttled > 0  # 429s, honoured, and every customer read in the end
    assert emulator.max_reads_in_window() <= 5


def test_an_interrupted_reconcile_resumes_where_it_stopped(
    emulator: MonkEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = deliver(emulator, tmp_path, rows=700, customers=7)
    emulator.read_faults.extend([Rule(), Rule(), Rule(), Rule(status=400)])  # 4th read fails
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 2 and report == {}
    errors = [line for line in capsys.readouterr().err.splitlines() if "failed" in line]
    assert len(errors) == 1 and errors[0].startswith("target-monk failed: reconcile could not")
    partial = tmp_path / "report.json.partial"
    assert len(partial.read_text().splitlines()) == 1 + 3  # the arguments, 3 customers done
    reads = len(emulator.read_times)
    code, report, _ = run_reconcile(config, tmp_path)
    assert code == 0 and report["totals"]["matched"] == 700
    assert len(emulator.read_times) - reads == 4  # only the 4 customers left
    assert not partial.exists()


def test_a_sample_checks_a_fraction_of_the_customer_days(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    config = deliver(emulator, tmp_path, rows=2000, customers=20)
    code, report, _ = run_reconcile(config, tmp_path, "--sample", "0.2", "--seed", "7")
    assert code == 0
    checked = sum(len(days) for days in report["per_customer_day"].values())
    assert 20 <= checked <= 60  # of 200 customer-days
    assert report["totals"]["matched"] == checked * 10
    again = run_reconcile(config, tmp_path, "--sample", "0.2", "--seed", "7")[1]
    assert again["per_customer_day"] == report["per_customer_day"]  # the same sample


def test_when_monk_cannot_be_read_it_exits_2_in_one_line(
    emulator: MonkEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = deliver(emulator, tmp_path)
    emulator.read_faults.append(Rule(status=403, code="FORBIDDEN"))
    code, _, _ = run_reconcile(config, tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    failures = [line for line in err.splitlines() if "target-monk failed" in line]
    assert len(failures) == 1 and "usage:read" in failures[0]
    assert API_KEY not in err


def test_the_command_line_through_python_m(emulator: MonkEmulator, tmp_path: Path) -> None:
    config = deliver(emulator, tmp_path)
    done = subprocess.run(
        [
            *RECONCILE,
            "--config",
            str(config),
            "--start",
            "2026-03-02",
            "--end",
            "2026-03-03",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "Match: Monk holds the 140 events the ledger has (2026-03-02 to 2026-03-03" in done.stdout
    )
    assert "reconcile: 7/7 customers, 7 requests, 140 events listed" in done.stderr


# Units.


def test_a_range_read_in_runs_of_days_gives_the_same_report(
    emulator: MonkEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = deliver(emulator, tmp_path)
    changed = {**emulator.events["usage:20"], "timestamp": "2026-03-09T00:00:00Z"}
    post(emulator, [changed])  # Monk has it on another day, in another run of days
    emulator.delete(["usage:15"])
    whole = run_reconcile(config, tmp_path)[1]
    monkeypatch.setattr("target_monk.proof.reconciler.CHUNK_EVENTS", 30)  # 3 days a run
    reads = len(emulator.read_times)
    chunked = run_reconcile(config, tmp_path)[1]
    assert len(emulator.read_times) - reads == 7 * 4  # 10 days: 4 runs per customer
    for name in ("totals", "per_customer_day", "missing", "different", "extra"):
        assert chunked[name] == whole[name], name
    assert whole["different"][0]["fields"] == ["timestamp"]
    assert whole["totals"]["missing"] == 1 and whole["totals"]["matched"] == 698


def test_an_answer_of_another_shape_cannot_be_checked(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    deliver(emulator, tmp_path)
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    emulator.read_faults.append(Rule(status=200, body='{"events": []}'))
    reader = read_client(emulator, RateLimit(100))
    with pytest.raises(ReconcileError, match="has no 'data' list"):
        Reconciler(ledger, reader, 0).run(dt.date(2026, 3, 1), dt.date(2026, 3, 1))
    ledger.close()


@pytest.mark.usefixtures("meltano_plugins")
def test_meltano_invoke_reconcile(emulator: MonkEmulator, tmp_path: Path) -> None:
    deliver(emulator, tmp_path)
    emulator.delete(["usage:3"])
    settings = {
        "TARGET_MONK_API_KEY": API_KEY,
        "TARGET_MONK_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "TARGET_MONK_READ_API_URL": emulator.url,
        "TARGET_MONK_RECONCILE_SETTLE_SECONDS": "0",
    }
    report = tmp_path / "meltano-report.json"
    done = subprocess.run(
        [
            MELTANO,
            "invoke",
            "target-monk:reconcile",
            "--start",
            "2026-03-01",
            "--end",
            "2026-03-10",
            "--report",
            str(report),
        ],
        cwd=ROOT,
        env=meltano_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Differences (2026-03-01 to 2026-03-10, 7 customers): 1 missing" in done.stdout
    assert json.loads(report.read_text())["missing"][0]["key"] == "usage:3"


@pytest.mark.orchestrate
def test_the_demo_ends_proving_the_bill() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--rows", "2000", "--new-rows", "100"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every row delivered exactly once" in done.stdout
    assert "Match: Monk holds the 2,100 events the ledger has" in done.stdout
    table = done.stdout.split("meltano invoke target-monk:reconcile --all-rows")[1]
    assert table.count("externalCustomerId:cus_") >= 7


def test_ctrl_c_stops_it_and_the_same_command_resumes(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    config = deliver(emulator, tmp_path)
    emulator.read_faults.extend([Rule(), Rule(), Rule(gate="third")])
    report = tmp_path / "report.json"
    command = [
        *RECONCILE,
        "--config",
        str(config),
        "--report",
        str(report),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "third" in emulator.gates, process=process)  # held there
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        emulator.gate("third").set()
    assert process.returncode == 2
    failures = [line for line in err.splitlines() if "target-monk failed" in line]
    assert failures == [
        "target-monk failed: reconcile interrupted; run the same command again to resume "
        "where it stopped"
    ]
    assert "Traceback" not in err and not report.exists()
    assert len((tmp_path / "report.json.partial").read_text().splitlines()) == 1 + 2
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(report.read_text())["totals"]["matched"] == 700
    assert len(emulator.read_times) == 3 + 5  # the two customers done are not read again


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Rule(status=200, body='{"data": [], "hasMore": true}'), "gives no nextCursor"),
        (Rule(status=200, body="<html>maintenance</html>"), "is not a JSON object"),
    ],
)
def test_answers_of_another_shape_are_named(
    emulator: MonkEmulator, tmp_path: Path, answer: Rule, reason: str
) -> None:
    deliver(emulator, tmp_path, rows=70)
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    emulator.read_faults.append(answer)
    with pytest.raises(ReconcileError, match=reason):
        Reconciler(ledger, read_client(emulator, RateLimit(100)), 0).run(
            dt.date(2026, 3, 1), dt.date(2026, 3, 10)
        )
    ledger.close()


def test_a_dropped_connection_is_retried_and_a_host_that_does_not_resolve_is_not(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    deliver(emulator, tmp_path, rows=70)
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    emulator.read_faults.append(Rule(drop=True))
    reader = read_client(emulator, RateLimit(100))
    assert API_KEY not in repr(reader)
    report = Reconciler(ledger, reader, 0).run(dt.date(2026, 3, 1), dt.date(2026, 3, 10))
    assert report.totals()["matched"] == 70 and reader.requests == 7 + 1
    nowhere = MonkReader(
        "http://monk.invalid",
        API_KEY,
        limit=RateLimit(100),
        timeout=5,
        max_retries=3,
        backoff_seconds=0.01,
        max_wait_seconds=0.05,
    )
    with pytest.raises(ReconcileError, match=r"does not resolve.*check read_api_url"):
        Reconciler(ledger, nowhere, 0).run(dt.date(2026, 3, 1), dt.date(2026, 3, 10))
    assert nowhere.requests == 1
    ledger.close()


def test_settings_from_the_environment_as_meltano_sets_them(
    emulator: MonkEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = json.loads(deliver(emulator, tmp_path).read_text())
    for name, value in config.items():
        monkeypatch.setenv(f"TARGET_MONK_{name.upper()}", str(value))
    monkeypatch.setenv("TARGET_MONK_STREAM_OVERRIDES", '{"usage": {"event_name": "x"}}')
    report = tmp_path / "env-report.json"
    (tmp_path / "env-report.json.partial").write_text("left over\n")
    assert reconcile(["--config", "ENV", "--report", str(report), "--restart"]) == 0
    assert json.loads(report.read_text())["totals"]["matched"] == 700


@pytest.mark.parametrize(
    ("settings", "args", "reason"),
    [
        ({"ledger": False}, [], "the ledger is off"),
        ({}, [], "has no delivered events: give --start and --end"),
        (None, [], "cannot read --config"),
        ({}, ["--sample", "most"], "argument --sample: a fraction above 0 and at most 1"),
        ({}, ["--sample", "2"], "a fraction above 0 and at most 1, got '2'"),
        ({}, ["--start", "March"], "argument --start: not a date (YYYY-MM-DD): 'March'"),
        ({}, ["--start", "2026-03-02", "--end", "2026-03-01"], "--end 2026-03-01 is before"),
    ],
)
def test_what_it_cannot_check_it_says_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    settings: dict | None,
    args: list[str],
    reason: str,
) -> None:
    config = tmp_path / "config.json"
    if settings is not None:
        config.write_text(
            json.dumps({"api_key": API_KEY, "ledger_path": str(tmp_path / "l"), **settings})
        )
    with pytest.raises(SystemExit) as exit_:
        sys.exit(reconcile(["--config", str(config), *args]))
    assert exit_.value.code == 2
    [line] = [row for row in capsys.readouterr().err.splitlines() if "failed" in row]
    assert line.startswith("target-monk failed: reconcile") and reason in line
