"""target-monk as a subprocess against the emulator: exact delivery and gated STATE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.messages import interleaved_input
from testkit.processes import TARGET, base_config, open_gate_when, run_in_process, run_target

pytestmark = pytest.mark.in_flight  # rerun with 1 and 8 batches in flight


@pytest.mark.parametrize("max_in_flight", [1, 4, 8])
def test_two_interleaved_streams_delivered_exactly_once_with_gated_state(
    emulator: MonkEmulator, tmp_path: Path, max_in_flight: int
) -> None:
    data = interleaved_input({"usage_a": 12_000, "usage_b": 3_000}, state_every=1000)
    config = base_config(emulator, max_in_flight=max_in_flight)
    # The last batch of usage_a is held until the 3 others are accepted: STATEs before
    # it go out first, none past it.
    emulator.script_by_key["usage_a:11000"] = Rule(gate="last")
    open_gate_when(emulator, "last", lambda: len(emulator.accepted_requests()) >= 3)
    run = run_target(config, data.text(), tmp_path, emulator)

    assert run.returncode == 0, run.stderr
    all_keys = data.keys_before_state[-1][1]
    assert len(all_keys) == 15_000
    assert emulator.held_keys() == all_keys
    assert set(emulator.writes.values()) == {1}
    counts = [r.count for r in emulator.accepted_requests()]
    assert sum(counts) == 15_000
    assert max(counts) == 5000
    assert sorted(counts) == [2000, 3000, 5000, 5000]

    input_states = [state for state, _ in data.keys_before_state]
    assert run.states, "no STATE was written"
    assert run.states[-1] == input_states[-1]
    positions = [input_states.index(state) for state in run.states]
    assert positions == sorted(set(positions)), "STATE out of input order or repeated"
    assert len(run.states) >= 2, "STATE only at the end: checkpoints are not prompt"
    for state, written_at, held in zip(
        run.states, run.state_times, run.keys_held_at_state, strict=True
    ):
        needed = data.keys_before_state[input_states.index(state)][1]
        assert needed <= held, "STATE written before its records were accepted"
        accepted_at = max(
            r.accepted_at for r in emulator.accepted_requests() if needed & set(r.keys)
        )
        assert written_at >= accepted_at

    rerun = run_target(config, data.text(), tmp_path, emulator)
    assert rerun.returncode == 0, rerun.stderr
    assert emulator.held_keys() == all_keys
    assert set(emulator.writes.values()) == {2}


def test_float_state_written_back_exactly(emulator: MonkEmulator, tmp_path: Path) -> None:
    data = interleaved_input({"s": 3}, state_every=3)
    raw_state = '{"bookmarks":{"s":{"replication_key_value":1.10,"ratio":0.3333333333333333333}}}'
    text = data.text() + f'{{"type": "STATE", "value": {raw_state}}}\n'
    run = run_target(base_config(emulator), text, tmp_path, emulator)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == raw_state


def test_default_batch_size_and_setting_takes_effect(
    emulator: MonkEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    data = interleaved_input({"s": 2500}, state_every=500)
    states = run_in_process(base_config(emulator, batch_size_rows=1000), data.text(), capfd)
    assert sorted(r.count for r in emulator.accepted_requests()) == [500, 1000, 1000]
    assert states[-1] == data.keys_before_state[-1][0]
    emulator.reset()
    config = base_config(emulator)
    big = interleaved_input({"s": 12_000}, state_every=4000)
    states = run_in_process(config, big.text(), capfd)
    assert sorted(r.count for r in emulator.accepted_requests()) == [2000, 5000, 5000]
    assert states[-1] == big.keys_before_state[-1][0]


def test_byte_cap_splits_a_batch_and_state_waits_for_every_part(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    data = interleaved_input({"s": 12_000}, state_every=1000)
    config = base_config(emulator, max_batch_bytes=300_000)
    run = run_target(config, data.text(), tmp_path, emulator)
    assert run.returncode == 0, run.stderr
    assert emulator.held_keys() == data.keys_before_state[-1][1]
    assert all(r.body_bytes <= 300_000 for r in emulator.requests)
    assert len(emulator.requests) > 3
    assert "part 2/" in run.stderr
    assert run.states[-1] == data.keys_before_state[-1][0]
    for state, held in zip(run.states, run.keys_held_at_state, strict=True):
        needed = next(keys for value, keys in data.keys_before_state if value == state)
        assert needed <= held


@pytest.mark.parametrize("size", [0, 10_001])
def test_batch_size_out_of_range_refused_at_start(
    emulator: MonkEmulator, tmp_path: Path, size: int
) -> None:
    data = interleaved_input({"s": 3}, state_every=3)
    run = run_target(base_config(emulator, batch_size_rows=size), data.text(), tmp_path)
    assert run.returncode != 0
    assert "batch_size_rows" in run.stderr
    assert emulator.requests == []


def test_load_method_overwrite_is_refused_at_start(emulator: MonkEmulator, tmp_path: Path) -> None:
    data = interleaved_input({"s": 3}, state_every=3)
    run = run_target(base_config(emulator, load_method="overwrite"), data.text(), tmp_path)
    assert run.returncode != 0
    assert "load_method 'overwrite'" in run.stderr
    assert emulator.requests == []


def test_config_from_environment(emulator: MonkEmulator, tmp_path: Path) -> None:
    data = interleaved_input({"s": 10}, state_every=10)
    env = {
        "PATH": "/usr/bin:/bin",
        "TARGET_MONK_API_KEY": base_config(emulator)["api_key"],
        "TARGET_MONK_API_URL": emulator.url,
        "TARGET_MONK_EVENT_NAME": "from_env",
    }
    done = subprocess.run(
        [*TARGET, "--config", "ENV"],
        input=data.text(),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(emulator.held_keys()) == 10
    assert {e["eventName"] for e in emulator.events.values()} == {"from_env"}


def test_python_dash_m_and_console_script_are_the_same() -> None:
    script = Path(sys.executable).with_name("target-monk")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    assert "target-monk" in version.stdout + version.stderr


def test_retries_then_success_end_to_end(emulator: MonkEmulator, tmp_path: Path) -> None:
    emulator.script[1] = Rule(status=503)
    emulator.script[2] = Rule(status=429, retry_after="0")
    emulator.script[3] = Rule(drop=True)
    data = interleaved_input({"s": 6000}, state_every=1000)
    run = run_target(base_config(emulator, max_in_flight=1), data.text(), tmp_path, emulator)
    assert run.returncode == 0, run.stderr
    assert emulator.held_keys() == data.keys_before_state[-1][1]
    assert run.states[-1] == data.keys_before_state[-1][0]
