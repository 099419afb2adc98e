"""The randomized chaos suite: seeded scenarios, each run against a fresh emulator,
with the invariants checked after every run.

A scenario mixes input (1-6 interleaved streams keyed by an integer, a string, a
composite or a date-time; repeated versions of rows; STATE messages up to ~100 KB;
repeated and changed SCHEMA; ACTIVATE_VERSION; BATCH files, plain and gzip; a corrupt
line), Monk's faults (429 with and without Retry-After, 500/503, dropped connections,
answers slower than the timeout, answers cut off, accepted then dropped), settings
(batch size, batches in flight, retries, flush interval, buffer cap, the SDK's path)
and a SIGTERM or SIGKILL at some moment, followed by a replay from the last STATE
written, as a tap resuming from its bookmark would send.

Scenario `n` of seed `s` is always the same input, faults and settings
(`Scenario.generate(s, n)`); what a kill interrupts depends on timing. The checks
(`check_run`) read only what a user could see: STATE lines, exit code, stderr, and
what Monk holds. Records carry their stream (`src`), identity and version (`v`) as
properties, so the checks need no knowledge of how keys are made.

`scripts/chaos` runs it from the command line; tests/e2e/test_chaos_suite.py runs a fixed
set of seeds, and shows the checks catch deliberately broken builds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import typing as t
from dataclasses import asdict, dataclass, field
from pathlib import Path

from target_monk.emulator import MonkEmulator, Rule
from target_monk.proof.ledger import Ledger
from testkit.processes import run_piped

API_KEY = "mk_test_" + "c4a0" * 12
TARGET = [sys.executable, "-m", "target_monk"]
KEY_KINDS = ("int", "str", "composite", "datetime")
FAULTS = ("429", "429-retry-after", "500", "503", "drop", "timeout", "cut", "accept-then-drop")
RUN_TIMEOUT = 90.0
"""Seconds a run may take before it counts as a hang."""


@dataclass
class Kill:
    """A signal sent to the target: after its `after_states`-th STATE line, or once
    Monk has seen `after_requests` requests, or right after its summary line."""

    signum: int
    after_states: int | None = None
    after_requests: int | None = None
    after_summary: bool = False


@dataclass
class Scenario:
    """One chaos case: what the tap sends, how Monk misbehaves, the settings, a kill."""

    seed: int
    number: int
    messages: list[dict[str, t.Any]]
    settings: dict[str, t.Any]
    faults: dict[int, dict[str, t.Any]] = field(default_factory=dict)
    kill: Kill | None = None
    corrupt_at: int | None = None
    """Index in `messages` before which a line that is not JSON is sent."""

    @property
    def recoverable(self) -> bool:
        """Every batch can get through: at most max_retries faults in all (each batch
        then has an attempt left), and the input is valid."""
        return self.corrupt_at is None and len(self.faults) <= self.settings["max_retries"]

    @classmethod
    def generate(cls, seed: int, number: int, force: t.Collection[str] = ()) -> Scenario:
        """Scenario `number` of `seed`. `force` turns features on whatever the dice say:
        repeat_schema, batch, faults, kill, sigterm_after_summary, versions, corrupt."""
        rng = random.Random(f"{seed}:{number}")  # noqa: S311 (replayable, not secret)
        streams = [f"s{i}" for i in range(rng.randint(1, 6))]
        kinds = {s: rng.choice(KEY_KINDS) for s in streams}
        repeat_schema = "repeat_schema" in force or rng.random() < 0.3
        versions = "versions" in force or rng.random() < 0.7
        messages = [schema_message(s, kinds[s], extra=False) for s in streams]
        latest: dict[tuple, int] = {}
        pools = {s: rng.randint(3, 60) for s in streams}
        total = rng.randint(20, 400)
        for position in range(total):
            stream = rng.choice(streams)
            row = rng.randrange(pools[stream]) if versions else position
            identity = (stream, row)
            latest[identity] = latest.get(identity, 0) + 1
            messages.append(record_message(stream, kinds[stream], row, latest[identity]))
            if rng.random() < 0.08:
                padding = "x" * rng.choice((0, 0, 0, 1_000, 100_000))
                messages.append(state_message(position + 1, padding))
            if repeat_schema and rng.random() < 0.04:
                messages.append(schema_message(stream, kinds[stream], extra=rng.random() < 0.5))
            if rng.random() < 0.01:
                messages.append({"type": "ACTIVATE_VERSION", "stream": stream, "version": 1})
        messages.append(state_message(total, ""))
        if "batch" in force or rng.random() < 0.2:
            messages = in_batch_messages(messages, rng)
        settings = {
            "batch_size_rows": rng.choice((1, 3, 7, 20, 60, 5000)),
            "max_in_flight": rng.choice((1, 2, 4, 8)),
            "max_retries": rng.randint(0, 5),
            "retry_backoff_seconds": 0.01,
            "max_retry_wait_seconds": 0.05,
            "request_timeout_seconds": 2,  # far above a loaded machine's answers
            "flush_interval_seconds": rng.choice((0.2, 1, 60)),
            "max_buffered_events": rng.choice((20, 200, 50_000)),
            "validate_records": rng.random() < 0.25,
        }
        faults: dict[int, dict[str, t.Any]] = {}
        if "faults" in force or rng.random() < 0.6:
            for _ in range(rng.randint(1, 5)):
                faults[rng.randint(1, 12)] = fault_rule(rng.choice(FAULTS))
        kill = None
        if "sigterm_after_summary" in force:
            kill = Kill(signal.SIGTERM, after_summary=True)
        elif "kill" in force or rng.random() < 0.25:
            signum = rng.choice((signal.SIGTERM, signal.SIGKILL, signal.SIGINT))
            if rng.random() < 0.5:
                kill = Kill(signum, after_states=rng.randint(1, 3))
            elif rng.random() < 0.8:
                kill = Kill(signum, after_requests=rng.randint(1, 6))
            else:
                kill = Kill(signum, after_summary=True)
        corrupt = ("corrupt" in force or rng.random() < 0.05) and len(messages) > 5
        corrupt_at = rng.randint(len(streams) + 1, len(messages) - 1) if corrupt else None
        return cls(seed, number, messages, settings, faults, kill, corrupt_at)

    def describe(self) -> str:
        """One line: what this scenario mixes."""
        kinds = sorted({m["type"] for m in self.messages})
        kill = self.kill and (
            f"{signal.Signals(self.kill.signum).name} after "
            + (
                f"{self.kill.after_states} STATE"
                if self.kill.after_states
                else f"{self.kill.after_requests} requests"
                if self.kill.after_requests
                else "the summary"
            )
        )
        faults = ",".join(f"{n}:{r['name']}" for n, r in sorted(self.faults.items()))
        return (
            f"seed {self.seed} #{self.number}: {len(self.messages)} messages "
            f"({'/'.join(kinds)}), batch {self.settings['batch_size_rows']}, "
            f"in flight {self.settings['max_in_flight']}, retries "
            f"{self.settings['max_retries']}, faults [{faults}]"
            + (f", {kill}" if kill else "")
            + (", corrupt line" if self.corrupt_at is not None else "")
            + (", SDK path" if self.settings["validate_records"] else "")
        )


def schema_message(stream: str, kind: str, extra: bool) -> dict[str, t.Any]:
    keys = {"int": ["id"], "str": ["code"], "composite": ["id", "code"], "datetime": ["at"]}
    properties: dict[str, t.Any] = {
        "id": {"type": ["integer", "null"]},
        "code": {"type": ["string", "null"]},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "src": {"type": "string"},
        "v": {"type": "integer"},
        "external_customer_id": {"type": "string"},
        "event_name": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "tokens": {"type": "integer"},
    }
    if extra:
        properties["note"] = {"type": ["string", "null"]}
    schema = {"type": "object", "properties": properties}
    return {"type": "SCHEMA", "stream": stream, "key_properties": keys[kind], "schema": schema}


def record_message(stream: str, kind: str, row: int, version: int) -> dict[str, t.Any]:
    record: dict[str, t.Any] = {
        "src": stream,
        "v": version,
        "external_customer_id": f"cus_{row % 5}",
        "event_name": "api_call",
        "timestamp": "2026-03-15T10:30:00Z",
        "tokens": row * 10 + version,
    }
    if kind in ("int", "composite"):
        record["id"] = row
    if kind in ("str", "composite"):
        record["code"] = f"r:{row}\\{row % 3}"  # the key separator and escape, in a key
    if kind == "datetime":
        at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=row)
        record["at"] = at.isoformat()
    return {"type": "RECORD", "stream": stream, "record": record}


def state_message(position: int, padding: str) -> dict[str, t.Any]:
    value: dict[str, t.Any] = {"position": position}
    if padding:
        value["padding"] = padding
    return {"type": "STATE", "value": value}


def identity_of(record: t.Mapping[str, t.Any]) -> tuple[str, str]:
    """Which source row a record or an event's properties stand for (a date-time by its
    instant: target-monk sends date-times in UTC with a Z)."""
    at = record.get("at")
    instant = at and dt.datetime.fromisoformat(at).astimezone(dt.UTC).isoformat()
    return record["src"], json.dumps([record.get("id"), record.get("code"), instant])


def in_batch_messages(messages: list[dict], rng: random.Random) -> list[dict]:
    """Some runs of one stream's RECORDs become one BATCH message (rows kept inline here,
    written to files when the scenario runs)."""
    out: list[dict] = []
    for message in messages:
        previous = out[-1] if out else None
        if message["type"] != "RECORD" or rng.random() < 0.3:
            out.append(message)
        elif (
            previous is not None
            and previous["type"] == "BATCH"
            and previous["stream"] == message["stream"]
        ):
            previous["rows"].append(message["record"])
        else:
            batch = {"type": "BATCH", "stream": message["stream"], "gzip": rng.random() < 0.5}
            out.append({**batch, "rows": [message["record"]]})
    return out


def fault_rule(name: str) -> dict[str, t.Any]:
    rules: dict[str, dict[str, t.Any]] = {
        "429": {"status": 429},
        "429-retry-after": {"status": 429, "retry_after": "0"},
        "500": {"status": 500},
        "503": {"status": 503},
        "drop": {"drop": True},
        "timeout": {"delay": 2.3},  # past request_timeout_seconds: stored, unanswered
        "cut": {"cut": True},
        "accept-then-drop": {"accept_then_drop": True},
    }
    return {"name": name, **rules[name]}


# Running a scenario.


@dataclass
class Outcome:
    """What one target process did."""

    returncode: int | None
    states: list[str]
    stderr: str
    seconds: float
    killed_by: int | None = None
    killed_at: float | None = None
    """When the signal was sent (time.time())."""


@dataclass
class Result:
    """A scenario's runs, the violations found, and the rows a request the target had
    abandoned overwrote with an older version when it landed late (see `held`)."""

    scenario: Scenario
    runs: list[Outcome]
    violations: list[str]
    late_landings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def input_lines(messages: list[dict], folder: Path, corrupt_at: int | None = None) -> bytes:
    """The Singer text of `messages` (BATCH rows written to files in `folder`), with a
    line that is not JSON before message `corrupt_at`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, message in enumerate(messages):
        if index == corrupt_at:
            lines.append(b'{"type": "RECORD", "stream": \n')
        if message["type"] == "BATCH":
            path = folder / f"batch-{index}.jsonl{'.gz' if message['gzip'] else ''}"
            data = b"".join(json.dumps(row).encode() + b"\n" for row in message["rows"])
            path.write_bytes(gzip.compress(data) if message["gzip"] else data)
            compression = "gzip" if message["gzip"] else "none"
            message = {
                "type": "BATCH",
                "stream": message["stream"],
                "encoding": {"format": "jsonl", "compression": compression},
                "manifest": [path.as_uri()],
            }
        lines.append(json.dumps(message).encode() + b"\n")
    return b"".join(lines)


def run_target(
    command: list[str],
    config: dict[str, t.Any],
    data: bytes,
    folder: Path,
    emulator: MonkEmulator,
    kill: Kill | None,
) -> Outcome:
    """One target process on `data` (`run_piped`); `kill` sends its signal at its
    moment: after a number of STATE lines, of requests Monk saw, or the summary."""
    killed = threading.Event()
    killed_at: list[float] = []
    states = 0
    process: subprocess.Popen | None = None

    def send_kill() -> None:
        running = process is not None and process.poll() is None
        if kill is not None and process is not None and running and not killed.is_set():
            killed.set()
            killed_at.append(time.time())
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(kill.signum)

    def watch_requests() -> None:
        assert kill is not None and kill.after_requests is not None
        while process is not None and process.poll() is None and not killed.is_set():
            if len(emulator.requests) >= kill.after_requests:
                send_kill()
                return
            time.sleep(0.002)

    def started(running: subprocess.Popen) -> None:
        nonlocal process
        process = running
        if kill is not None and kill.after_requests is not None:
            threading.Thread(target=watch_requests, daemon=True).start()

    def state_line(_: str) -> None:
        nonlocal states
        states += 1
        if kill is not None and kill.after_states == states:
            send_kill()

    def stderr_line(line: str) -> None:
        if kill is not None and kill.after_summary and "target-monk summary: " in line:
            send_kill()

    done = run_piped(
        command,
        config,
        data,
        folder,
        timeout=RUN_TIMEOUT,
        cwd=folder,
        on_started=started,
        on_stdout_line=state_line,
        on_stderr_line=stderr_line,
    )
    signum = kill.signum if kill is not None and killed.is_set() else None
    when = killed_at[0] if killed_at else None
    return Outcome(done.returncode, done.stdout_lines, done.stderr, done.seconds, signum, when)


def run_scenario(scenario: Scenario, folder: Path, command: t.Sequence[str] = TARGET) -> Result:
    """Run `scenario` against a fresh emulator; after a kill, replay from the last STATE
    written as a tap resuming from its bookmark would; check every run."""
    folder.mkdir(parents=True, exist_ok=True)
    with MonkEmulator(API_KEY) as emulator:
        for number, rule in scenario.faults.items():
            emulator.script[number] = Rule(**{k: v for k, v in rule.items() if k != "name"})
        ledger = folder / "ledger.sqlite"
        config = {
            "api_key": API_KEY,
            "api_url": emulator.url,
            "ledger_path": str(ledger),
            **scenario.settings,
        }
        data = input_lines(scenario.messages, folder, scenario.corrupt_at)
        first = run_target(list(command), config, data, folder, emulator, scenario.kill)
        settle(emulator)
        first_requests = len(emulator.requests)
        timeouts = {n for n, rule in scenario.faults.items() if rule["name"] == "timeout"}

        def abandoned() -> set[int]:
            """Requests the target gave up on: answered after its timeout, or still in
            Monk's hands when the process was killed."""
            after_kill = {
                r.number
                for r in emulator.requests[:first_requests]
                if first.killed_at and r.accepted_at > first.killed_at
            }
            return {n for n in timeouts if n <= first_requests} | after_kill

        late: list[str] = []
        violations = check_run(scenario, scenario.messages, first, emulator, abandoned(), late)
        # Answers the target may never have seen: cut off or dropped after Monk stored the
        # batch, and every answer of a killed run (killed between Monk's answer and the
        # ledger's write). The replay sends those events again, and is checked strictly.
        unanswered = {
            n
            for n, rule in scenario.faults.items()
            if rule.get("cut") or rule.get("accept_then_drop")
        }
        if first.killed_by is not None:
            unanswered |= {r.number for r in emulator.requests[:first_requests]}
        violations += check_ledger(ledger, emulator, abandoned(), unanswered, late)
        runs = [first]
        if first.killed_by is not None or first.returncode != 0:
            # The tap runs again from its bookmark; the corrupt line or the fault is gone.
            replay = replay_messages(scenario.messages, first.states)
            emulator.script.clear()
            data = input_lines(replay, folder / "replay")
            second = run_target(list(command), config, data, folder, emulator, None)
            settle(emulator)
            runs.append(second)
            violations += [
                f"replay: {v}"
                for v in check_run(
                    scenario, replay, second, emulator, abandoned(), late, fixed=True
                )
                + check_ledger(ledger, emulator, abandoned(), set(), late)
            ]
    return Result(scenario, runs, violations, sorted(set(late)))


def check_ledger(
    path: Path, emulator: MonkEmulator, abandoned: set[int], unanswered: set[int], late: list[str]
) -> list[str]:
    """The ledger has a row only for keys of requests Monk answered 202, each the
    version Monk holds, unless Monk's last write of the key came from a request whose
    answer the target never saw: one it gave up on (a late landing, noted in `late`), or
    one stored and then cut off, dropped or answered as the run was killed
    (`unanswered`: a replay sends it again)."""
    if not path.exists():  # a dry run, or failed before opening it
        return []
    ledger = Ledger(str(path))
    try:
        ledger.materialize()
    finally:
        ledger.close()
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT idempotency_key, event FROM target_monk_ledger")
        recorded = {key: json.loads(event) for key, event in rows.fetchall()}
    with emulator.lock:
        answered = sorted(
            (r for r in emulator.requests if r.status == 202), key=lambda r: r.accepted_at
        )
        held = dict(emulator.events)
    last_writer = {key: r.number for r in answered for key in r.keys}
    violations = [
        f"the ledger has key {key}, which Monk never accepted"
        for key in recorded.keys() - last_writer.keys()
    ]
    for key, event in recorded.items():
        writer = last_writer.get(key)
        if writer is None or held.get(key) == event or writer in unanswered - abandoned:
            continue
        problem = f"the ledger's version of {key} is not the one Monk holds"
        (late if writer in abandoned else violations).append(problem)
    return violations


def settle(emulator: MonkEmulator, seconds: float = 10.0) -> None:
    """Wait (a while at most) until Monk has finished every request it received, so that
    one the target gave up on is stored, or not, before the checks look."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(
        r.status == 0 and not r.dropped for r in list(emulator.requests)
    ):
        time.sleep(0.01)


def replay_messages(messages: list[dict], states: list[str]) -> list[dict]:
    """What a tap resuming from the last STATE written sends: every stream's SCHEMA, then
    every message after that STATE."""
    last: dict[str, t.Any] | None = None
    for line in states:
        with contextlib.suppress(ValueError):
            last = json.loads(line)
    start = 0
    if last is not None:
        start = next(
            i + 1 for i, m in enumerate(messages) if m["type"] == "STATE" and m["value"] == last
        )
    schemas: dict[str, dict] = {}
    for message in messages[:start]:
        if message["type"] == "SCHEMA":
            schemas[message["stream"]] = message
    return [*schemas.values(), *messages[start:]]


# The invariants.


def records_of(messages: list[dict]) -> t.Iterator[tuple[int, dict[str, t.Any]]]:
    """(message index, record) for every record, BATCH rows included."""
    for index, message in enumerate(messages):
        if message["type"] == "RECORD":
            yield index, message["record"]
        elif message["type"] == "BATCH":
            for row in message["rows"]:
                yield index, row


def latest_versions(messages: list[dict], before: int | None = None) -> dict[tuple, int]:
    """Per identity, its latest version among the records before message `before`."""
    latest: dict[tuple, int] = {}
    for index, record in records_of(messages):
        if before is not None and index >= before:
            break
        identity = identity_of(record)
        latest[identity] = max(latest.get(identity, 0), record["v"])
    return latest


def held(
    emulator: MonkEmulator,
    abandoned: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[dict[tuple, int], list[str], set[tuple]]:
    """Per identity, the version Monk holds; keys shared by two identities or
    identities under two keys; and the identities last written by an abandoned request.

    Those are Monk's last write wins meeting a request the target gave up on (it timed
    out, or the process died) that Monk still stored later, after a newer version of
    the row was accepted: no sender can prevent that, so it is reported apart."""
    versions: dict[tuple, int] = {}
    keys: dict[tuple, str] = {}
    problems = []
    with emulator.lock:
        events = dict(emulator.events)
        last_writer: dict[str, tuple[float, int]] = {}
        for request in emulator.requests:
            stored = request.accepted_at
            if not stored:
                continue
            for key in request.keys:
                if last_writer.get(key, (0.0, 0))[0] <= stored:
                    last_writer[key] = (stored, request.number)
    late = set()
    for key, event in events.items():
        identity = identity_of(event["properties"])
        if identity in keys:
            problems.append(f"row {identity} is held under two keys, {keys[identity]} and {key}")
        keys[identity] = key
        versions[identity] = event["properties"]["v"]
        if last_writer.get(key, (0.0, 0))[1] in abandoned:
            late.add(identity)
    return versions, problems, late


def check_run(
    scenario: Scenario,
    messages: list[dict],
    run: Outcome,
    emulator: MonkEmulator,
    abandoned: set[int],
    late: list[str],
    fixed: bool = False,
) -> list[str]:
    """The invariants of one run: STATE lines whole and in input order; every record
    before the last STATE held in its latest version (or a later one); no key invented
    or shared; a failure said in one line, without traceback or key; exit 0 only when
    everything was accepted, and always when nothing could stop it; no hang. A row an
    abandoned request overwrote late goes to `late`, not to the violations."""
    violations = []
    if run.seconds > RUN_TIMEOUT:
        violations.append(f"the run did not end within {RUN_TIMEOUT:g} s")
    positions = []
    state_index = {
        json.dumps(m["value"], sort_keys=True): i
        for i, m in enumerate(messages)
        if m["type"] == "STATE"
    }
    for line in run.states:
        try:
            value = json.loads(line)
        except ValueError:
            violations.append(f"a STATE line is not whole JSON: {line[:80]!r}")
            continue
        index = state_index.get(json.dumps(value, sort_keys=True))
        if index is None:
            violations.append(f"a STATE line that no STATE message had: {line[:80]!r}")
        else:
            positions.append(index)
    if positions != sorted(set(positions)):
        violations.append(f"STATE lines out of input order: message positions {positions}")
    versions, problems, late_rows = held(emulator, abandoned)
    violations += problems
    sent = latest_versions(scenario.messages)
    for identity, version in versions.items():
        if version > sent.get(identity, 0):
            violations.append(f"Monk holds row {identity} at version {version}, never sent")
    if positions:
        for identity, version in latest_versions(messages, before=positions[-1]).items():
            if versions.get(identity, 0) < version:
                (late if identity in late_rows else violations).append(
                    f"STATE {positions[-1]} written, but row {identity} is held at version "
                    f"{versions.get(identity)} < {version}"
                )
    killed_hard = run.killed_by == signal.SIGKILL
    if not killed_hard:
        violations += check_stderr(run)
    valid = fixed or scenario.corrupt_at is None
    # Stopped by a signal, exit 0 says every record *read* was accepted, not all input.
    if run.returncode == 0 and run.killed_by is None and not valid:
        violations.append("exit 0 on input with a corrupt line")
    if run.returncode == 0 and run.killed_by is None and valid:
        for identity, problem in check_complete(messages, versions):
            (late if identity in late_rows else violations).append(f"exit 0, but {problem}")
    should_finish = (fixed or scenario.recoverable) and run.killed_by is None
    if should_finish and run.returncode != 0:
        violations.append(f"exit {run.returncode} although nothing could stop the run")
    return violations


def check_complete(messages: list[dict], versions: dict[tuple, int]) -> list[tuple[tuple, str]]:
    """(row, problem) for every row Monk does not hold in its latest version."""
    return [
        (identity, f"row {identity} is held at version {versions.get(identity)}, not {version}")
        for identity, version in latest_versions(messages).items()
        if versions.get(identity) != version
    ]


def check_stderr(run: Outcome) -> list[str]:
    """A failure is one line; nothing shows a traceback or the key."""
    violations = []
    if "Traceback" in run.stderr:
        violations.append("a traceback on stderr")
    if API_KEY in run.stderr:
        violations.append("the API key on stderr")
    failed = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    signal_lines = [line for line in run.stderr.splitlines() if "Received signal" in line]
    if run.returncode not in (0, None) and len(failed) + len(signal_lines) != 1:
        violations.append(
            f"exit {run.returncode} with {len(failed)} failure and {len(signal_lines)} signal "
            "lines (one expected)"
        )
    if run.returncode == 0 and failed:
        violations.append("exit 0 with a failure line")
    return violations


def save(result: Result, folder: Path) -> Path:
    """The failing scenario as files to replay: scenario.json (input, settings, faults,
    kill), input.jsonl, and what each run printed."""
    folder.mkdir(parents=True, exist_ok=True)
    scenario = asdict(result.scenario)
    (folder / "scenario.json").write_text(json.dumps(scenario, indent=1))
    (folder / "violations.txt").write_text("\n".join(result.violations) + "\n")
    for number, run in enumerate(result.runs, 1):
        (folder / f"run{number}.stderr").write_text(run.stderr)
        (folder / f"run{number}.stdout").write_text("".join(run.states))
    return folder
