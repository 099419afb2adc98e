"""Concurrent batches: STATE stays in input order whatever order requests finish in."""

from __future__ import annotations

from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.messages import interleaved_input
from testkit.processes import base_config, open_gate_when, run_target

pytestmark = pytest.mark.in_flight  # rerun with 1 and 8 batches in flight


def position(state: dict) -> int:
    return state["bookmarks"]["s"]["replication_key_value"]


def test_delayed_early_batch_holds_every_state_until_accepted(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    data = interleaved_input({"s": 30_000}, state_every=1000)
    # Batch 1 is held until another batch has been accepted.
    emulator.script_by_key["s:0"] = Rule(gate="first")
    open_gate_when(emulator, "first", lambda: emulator.accepted_requests())
    run = run_target(base_config(emulator, max_in_flight=8), data.text(), tmp_path, emulator)
    assert run.returncode == 0, run.stderr

    accepted = emulator.accepted_requests()
    first = next(r for r in accepted if "s:0" in r.keys)
    assert accepted[-1] is first or accepted.index(first) > 0, "batch 1 was not overtaken"
    assert any(r.accepted_at < first.accepted_at for r in accepted)
    assert run.states[-1] == data.keys_before_state[-1][0]
    assert min(run.state_times) >= first.accepted_at
    for state, held in zip(run.states, run.keys_held_at_state, strict=True):
        needed = {f"s:{i}" for i in range(position(state))}
        assert needed <= held


def test_failure_in_batch_k_with_later_batches_in_flight(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    data = interleaved_input({"s": 40_000}, state_every=1000)
    # Batch 3 is rejected only once batch 4 has been accepted.
    emulator.script_by_key["s:10000"] = Rule(status=422, code="VALIDATION_ERROR", gate="third")
    open_gate_when(
        emulator,
        "third",
        lambda: any("s:15000" in r.keys for r in emulator.accepted_requests()),
    )
    run = run_target(base_config(emulator, max_in_flight=8), data.text(), tmp_path, emulator)
    assert run.returncode != 0
    assert "HTTP 422 VALIDATION_ERROR" in run.stderr
    assert run.states, "the STATEs before batch 3 should have been written"
    assert max(position(state) for state in run.states) <= 10_000
    later_accepted = {k for r in emulator.accepted_requests() for k in r.keys}
    assert "s:15000" in later_accepted, "a later batch should have been in flight and accepted"
    assert "s:10000" not in emulator.held_keys()
