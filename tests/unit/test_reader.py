"""The input reader: lines split right whatever the read sizes; runs of records."""

from __future__ import annotations

import io
import os
import typing as t

import pytest

from target_monk.singer import reader
from target_monk.singer.reader import SingerBytesReader


@pytest.mark.parametrize("read_size", [7, 64, 1 << 20])
def test_lines_survive_any_read_size(monkeypatch: pytest.MonkeyPatch, read_size: int) -> None:
    monkeypatch.setattr(reader, "_READ_SIZE", read_size)
    long_value = "x" * 100_000
    data = f'{{"a":1}}\n\n{{"b":"{long_value}"}}\r\n{{"c":3}}'.encode()
    source = io.BufferedReader(io.BytesIO(data), buffer_size=16)
    lines = [line for chunk in reader._input_chunks(source, None, 1.0) for line in chunk]
    assert lines == [b'{"a":1}', f'{{"b":"{long_value}"}}\r'.encode(), b'{"c":3}']


def test_runs_of_one_streams_records_are_handed_over_together() -> None:
    messages = [
        '{"type":"SCHEMA","stream":"a","schema":{"properties":{}}}',
        '{"type":"RECORD","stream":"a","record":{"i":1}}',
        '{"type":"RECORD","stream":"a","record":{"i":2}}',
        '{"type":"RECORD","stream":"b","record":{"i":3}}',
        '{"type":"STATE","value":{"n":1}}',
        '{"type":"RECORD","stream":"b","record":{"i":4.5}}',
    ]
    seen: list = []
    text_reader = SingerBytesReader()
    text_reader.on_records = lambda stream, records: seen.append((stream, list(records)))

    def noting(kind: str) -> t.Callable[[dict], None]:
        return lambda message: seen.append((kind, message))

    kinds = ("SCHEMA", "STATE", "RECORD", "ACTIVATE_VERSION", "BATCH")
    callbacks = {kind: noting(kind) for kind in kinds}
    counts = text_reader.process_lines(io.BytesIO("\n".join(messages).encode()), callbacks)
    assert [entry[0] for entry in seen] == ["SCHEMA", "a", "b", "STATE", "b"]
    assert seen[1][1] == [{"i": 1}, {"i": 2}]
    assert str(seen[4][1][0]["i"]) == "4.5"  # a Decimal, digits kept
    assert counts == {"SCHEMA": 1, "RECORD": 4, "STATE": 1}


def test_a_silent_pipe_calls_idle_while_waiting() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b'{"a":1}\n')
    idle_calls: list[float] = []

    class SilenceError(Exception):
        pass

    def idle() -> None:
        idle_calls.append(1)
        if len(idle_calls) == 3:
            raise SilenceError

    with os.fdopen(read_end, "rb") as source:
        chunks = reader._input_chunks(source, idle, 0.01)
        assert next(chunks) == [b'{"a":1}']
        with pytest.raises(SilenceError):
            next(chunks)
    os.close(write_end)
    assert len(idle_calls) == 3
