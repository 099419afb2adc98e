"""The target as tests run it: as a process (piped, with when each STATE line came
and which keys Monk held then), in-process, or through Meltano; waiting without
sleeping for an ordering; the emulator's totals."""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

from target_monk import cli
from target_monk.emulator import MonkEmulator
from target_monk.singer.target import TargetMonk

API_KEY = "mk_test_" + "ab12" * 12
TARGET = [sys.executable, "-m", "target_monk"]


DEFAULTS = {"max_in_flight": 4}
"""The tests' defaults; pytest's --max-in-flight sets max_in_flight (tests/conftest.py),
so the in-flight-sensitive tests run again with 1 and with 8 (scripts/test)."""


def base_config(emulator: MonkEmulator, **overrides: t.Any) -> dict[str, t.Any]:
    """Fast-retrying config pointed at the emulator."""
    return {
        "api_key": API_KEY,
        "api_url": emulator.url,
        "retry_backoff_seconds": 0.05,
        "request_timeout_seconds": 5,
        **DEFAULTS,
        **overrides,
    }


@dataclass
class TargetRun:
    """What a target subprocess did."""

    returncode: int
    states: list[dict]
    stdout: str
    stderr: str
    state_times: list[float]
    keys_held_at_state: list[set[str]]


def start_target(
    config: dict[str, t.Any], tmp_path: Path, stderr: int = subprocess.PIPE
) -> subprocess.Popen:
    """Start `python -m target_monk` with `config`, its stdin and stdout piped. The
    `target_processes` fixture (conftest) ends it and closes its pipes after the test."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_MONK_")}
    process = subprocess.Popen(
        [*TARGET, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    STARTED.append(process)
    return process


STARTED: list[subprocess.Popen] = []
"""Target processes started by the running test (see conftest's target_processes)."""


def close_pipes(process: subprocess.Popen) -> None:
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def end_processes() -> None:
    """Kill what is still running of STARTED, close every pipe, forget them."""
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()
        close_pipes(process)


def feed(process: subprocess.Popen, data: bytes) -> None:
    """Write all of `data` to the process's stdin and close it (it may exit first)."""
    try:
        process.stdin.write(data)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def wait_until(
    condition: t.Callable[[], object],
    timeout: float = 30.0,
    process: subprocess.Popen | None = None,
) -> None:
    """Poll `condition` until it holds; fail after `timeout` s, or if `process` ends."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, "the process ended first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def open_gate_when(
    emulator: MonkEmulator, name: str, condition: t.Callable[[], object], timeout: float = 60
) -> threading.Thread:
    """Open the emulator's gate `name` once `condition()` holds (or after `timeout` s,
    failing the test through what it then asserts): an ordering the test sets up,
    with no sleep."""

    def opener() -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        emulator.gate(name).set()

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    return thread


@dataclass
class Piped:
    """What a piped target process wrote, and how it ended."""

    returncode: int
    stdout_lines: list[str]
    stderr: str
    seconds: float


def run_piped(
    command: t.Sequence[str],
    config: dict[str, t.Any],
    data: bytes,
    folder: Path,
    *,
    timeout: float,
    cwd: Path | None = None,
    on_started: t.Callable[[subprocess.Popen], None] | None = None,
    on_stdout_line: t.Callable[[str], None] | None = None,
    on_stderr_line: t.Callable[[str], None] | None = None,
) -> Piped:
    """The one target-process runner: `command --config` (written to `folder`) with
    `data` on stdin, stdout and stderr read line by line (each line handed to its
    callback as it comes), killed after `timeout` s; its pipes closed at the end."""
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_MONK_")}
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    STARTED.append(process)
    stderr: list[str] = []

    def read_stderr() -> None:
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            stderr.append(line)
            if on_stderr_line is not None:
                on_stderr_line(line)

    threads = [
        threading.Thread(target=feed, args=(process, data)),
        threading.Thread(target=read_stderr),
    ]
    for thread in threads:
        thread.start()
    if on_started is not None:
        on_started(process)
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    lines = []
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        lines.append(line)
        if on_stdout_line is not None:
            on_stdout_line(line)
    returncode = process.wait()
    timer.cancel()
    for thread in threads:
        thread.join(timeout=10)
    close_pipes(process)
    return Piped(returncode, lines, "".join(stderr), time.monotonic() - started)


def run_target(
    config: dict[str, t.Any],
    input_text: str | bytes,
    tmp_path: Path,
    emulator: MonkEmulator | None = None,
    timeout: float = 120,
    on_started: t.Callable[[subprocess.Popen], None] | None = None,
) -> TargetRun:
    """Pipe input into `python -m target_monk`; note when each STATE line appeared and
    which idempotency keys the emulator held at that moment."""
    data = input_text.encode() if isinstance(input_text, str) else input_text
    times: list[float] = []
    held: list[set[str]] = []

    def state_line(_: str) -> None:
        times.append(time.time())
        held.append(emulator.held_keys() if emulator else set())

    done = run_piped(
        TARGET,
        config,
        data,
        tmp_path,
        timeout=timeout,
        on_started=on_started,
        on_stdout_line=state_line,
    )
    return TargetRun(
        returncode=done.returncode,
        states=[json.loads(line) for line in done.stdout_lines],
        stdout="".join(done.stdout_lines),
        stderr=done.stderr,
        state_times=times,
        keys_held_at_state=held,
    )


def run_cli(
    config: dict[str, t.Any], input_text: str | bytes, tmp_path: Path, capfd: t.Any
) -> TargetRun:
    """The whole command line in this process (`cli.run`, as `target-monk --config`
    runs short of exiting), with `input_text` as stdin's bytes: its exit code, STATE
    lines and stderr, read with pytest's `capfd`. For tests that need no process of
    their own (no signal, no kill); what it changes of the process (logging handlers,
    signal handlers, stdin) is put back."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    data = input_text.encode() if isinstance(input_text, str) else input_text
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    signals = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stdin, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(data))
    capfd.readouterr()
    try:
        code = cli.run(["--config", str(config_path)])
    finally:
        sys.stdin = stdin
        root.handlers[:], root.level = handlers, level
        for signum, handler in signals.items():
            signal.signal(signum, handler)
    out, err = capfd.readouterr()
    states = [json.loads(line) for line in out.splitlines()]
    return TargetRun(code, states, out, err, state_times=[], keys_held_at_state=[])


def run_in_process(config: dict[str, t.Any], input_text: str, stdout: t.Any) -> list[dict]:
    """Run target-monk in this process on `input_text`, as the command line does short
    of exiting (a failure raises); return the STATE values written to stdout, read
    with pytest's `capfd` fixture (`stdout`)."""
    stdout.readouterr()
    messages = t.cast("t.IO[str]", io.BytesIO(input_text.encode()))  # read as bytes
    TargetMonk(config=config).listen(file_input=messages)
    return [json.loads(line) for line in stdout.readouterr().out.splitlines()]


ROOT = Path(__file__).resolve().parents[1]
MELTANO = str(Path(sys.executable).with_name("meltano"))


def meltano_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without TARGET_MONK_* and TAP_* settings, usage stats off, the
    ledger in the test's directory (Meltano runs plugins in the project's), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_MONK_", "TAP_"))}
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TARGET_MONK_LEDGER_PATH": str(Path.cwd() / "target-monk-ledger.sqlite"),
            **extra,
        }
    )
    return env


def emulator_totals(emulator: MonkEmulator) -> dict[str, tuple[int, int]]:
    """Per external customer: (events, sum of the tokens property) Monk holds."""
    counts: collections.Counter[str] = collections.Counter()
    tokens: collections.Counter[str] = collections.Counter()
    for event in emulator.events.values():
        counts[event["externalCustomerId"]] += 1
        tokens[event["externalCustomerId"]] += event["properties"]["tokens"]
    return {c: (counts[c], tokens[c]) for c in sorted(counts)}
