"""Signals while bad things happen: a clear exit code, and no STATE past the problem
(the target as a process: a signal needs one)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.messages import GOOD_STATE, LATE_STATE, full_batch_then
from testkit.processes import base_config, start_target, wait_until


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
