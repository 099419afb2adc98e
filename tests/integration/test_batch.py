"""BATCH messages from a real singer-sdk tap (tap-jsonl from PyPI, in its own venv):
exact delivery, STATE gated behind every record of the files before it, and a
file that cannot be read fails the run with no STATE past it."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from target_monk.errors import InputError
from target_monk.singer.batch_files import batch_records
from testkit.processes import ROOT, base_config, emulator_totals, run_target

TAP_JSONL = ROOT / ".venv-tap-jsonl" / "bin" / "tap-jsonl"
ROWS = 12_000


def source_rows() -> list[dict]:
    return [
        {
            "id": i,
            "external_customer_id": f"cus_{i % 7}",
            "event_name": "api_call",
            "timestamp": "2026-03-15T10:30:00Z",
            "tokens": i % 100,
        }
        for i in range(ROWS)
    ]


def tap_output(tmp_path: Path, compression: str) -> bytes:
    """Run tap-jsonl with batch_config over ROWS rows: its Singer output."""
    assert TAP_JSONL.exists(), "tap-jsonl is missing: run scripts/setup"
    source = tmp_path / "source.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in source_rows()))
    config = {
        "path": str(source),
        "stream_name": "usage",
        "primary_keys": ["id"],
        "batch_config": {
            "encoding": {"format": "jsonl", "compression": compression},
            "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "usage-"},
            "batch_size": 5000,
        },
    }
    (tmp_path / "tap.json").write_text(json.dumps(config))
    done = subprocess.run(
        [str(TAP_JSONL), "--config", str(tmp_path / "tap.json")],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def messages(output: bytes) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def rows_in(message: dict) -> list[dict]:
    return [record for run in batch_records(message) for record in run]


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_tap_jsonl_batches_delivered_exactly_with_state_gated(
    emulator: MonkEmulator, tmp_path: Path, compression: str
) -> None:
    output = tap_output(tmp_path, compression)
    tap_messages = messages(output)
    batches = [m for m in tap_messages if m["type"] == "BATCH"]
    assert len(batches) == 3, "the tap should write 3 batch files of at most 5000 rows"
    assert all(m["encoding"]["compression"] == compression for m in batches)
    assert not any(m["type"] == "RECORD" for m in tap_messages)
    # The keys each STATE may be written after: every row of the files before it.
    keys_before: list[tuple[dict, set[str]]] = []
    seen: set[str] = set()
    for message in tap_messages:
        if message["type"] == "BATCH":
            seen |= {f"usage:{row['id']}" for row in rows_in(message)}
        elif message["type"] == "STATE":
            keys_before.append((message["value"], set(seen)))

    run = run_target(base_config(emulator), output, tmp_path, emulator)

    assert run.returncode == 0, run.stderr[-3000:]
    assert emulator.held_keys() == {f"usage:{i}" for i in range(ROWS)}
    assert set(emulator.writes.values()) == {1}
    rows_of = collections.defaultdict(list)
    for row in source_rows():
        rows_of[row["external_customer_id"]].append(row["tokens"])
    expected = {c: (len(tokens), sum(tokens)) for c, tokens in sorted(rows_of.items())}
    assert emulator_totals(emulator) == expected  # events and token sums per customer
    assert run.states, "no STATE was written"
    assert run.states[-1] == keys_before[-1][0]
    for state, held in zip(run.states, run.keys_held_at_state, strict=True):
        needed = next(keys for value, keys in keys_before if value == state)
        assert needed <= held, "STATE written before the rows of its BATCH files were accepted"


def test_unreadable_batch_file_fails_with_no_state_past_it(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    output = tap_output(tmp_path, "gzip")
    tap_messages = messages(output)
    broken = [m for m in tap_messages if m["type"] == "BATCH"][1]
    broken_file = Path(broken["manifest"][0].removeprefix("file://"))
    broken_file.write_bytes(b"\x1f\x8b\x08 truncated gzip")
    first_state_after = next(
        m["value"] for m in tap_messages[tap_messages.index(broken) :] if m["type"] == "STATE"
    )

    run = run_target(base_config(emulator), output, tmp_path, emulator)

    assert run.returncode == 1
    failure = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    assert len(failure) == 1
    assert broken_file.name in failure[0]
    assert first_state_after not in run.states
    assert len(emulator.held_keys()) <= 5000  # nothing of the broken file or after it


def test_parquet_without_pyarrow_fails_at_once_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    message = {
        "type": "BATCH",
        "stream": "s",
        "encoding": {"format": "parquet", "compression": None},
        "manifest": ["file:///nonexistent/part-1.parquet"],
    }
    with pytest.raises(InputError, match=r"target-monk\[parquet\]"):
        next(batch_records(message))


def test_jsonl_row_that_is_not_an_object_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "part.jsonl"
    path.write_text('{"id": 1}\n[2]\n')
    message = {"encoding": {"format": "jsonl"}, "manifest": [path.as_uri()], "stream": "s"}
    with pytest.raises(InputError, match=r"part\.jsonl' row 2 is not a JSON object"):
        list(batch_records(message))
