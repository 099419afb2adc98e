"""Singer input reader: stdin bytes straight into msgspec (UTF-8 checked, floats as Decimal)."""

from __future__ import annotations

import collections
import os
import select
import sys
import time
import typing as t

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from typing_extensions import override

from target_monk.errors import InputError

_SHOWN_CHARS = 200
_READ_SIZE = 1 << 20

RecordsCallback = t.Callable[[str, list[dict]], None]


class SingerBytesReader(MsgSpecReader):
    """singer-sdk's msgspec reader, reading stdin as bytes, with short errors.

    With `on_records` set, consecutive RECORD messages of one stream are handed over
    together, as (stream, records), which keeps the per-record path short. A run ends
    at any other message, at another stream, and whenever the input has no more
    bytes ready, so a slow tap's records are never kept waiting here.
    """

    on_records: RecordsCallback | None = None
    on_tick: t.Callable[[], None] | None = None
    """Called at least every `tick_seconds`: between chunks, and while no input comes."""
    tick_seconds: float = 1.0
    on_failure: t.Callable[[Exception], None] | None = None
    """Called with any error that stops the reading, before it propagates."""

    @property
    @override
    def default_input(self) -> t.IO[t.Any]:  # type: ignore[override]
        """Standard input as bytes: no text decoding pass before parsing."""
        return sys.stdin.buffer

    @override
    def deserialize_json(self, line: str | bytes) -> dict:
        """Parse one line into a message object.

        Raises:
            InputError: not JSON, not UTF-8, or not a JSON object.
        """
        try:
            message = decoder.decode(line)
        except (msgspec.DecodeError, UnicodeError) as exc:
            # Our own words for bad UTF-8: msgspec's changed between releases.
            reason = str(exc) if _is_utf8(line) else "not valid UTF-8"
            msg = f"Unable to parse input line as JSON ({reason}): {line[:_SHOWN_CHARS]!r}"
            raise InputError(msg) from None
        if type(message) is not dict:
            msg = f"Input line is not a JSON object: {line[:_SHOWN_CHARS]!r}"
            raise InputError(msg)
        return message

    @override
    @staticmethod
    def assert_line_requires(line_dict: dict, requires: set[str]) -> None:
        """A message without a field it needs fails the run in one line.

        Raises:
            InputError: naming the missing fields.
        """
        if not requires.issubset(line_dict):
            missing = ", ".join(sorted(requires - set(line_dict)))
            msg = f"Singer message is missing its {missing}: {line_dict!r}"[:300]
            raise InputError(msg)

    @override
    def _process_unknown_message(self, message_dict: dict) -> None:
        """A message type the Singer spec does not define fails the run (never skipped)."""
        msg = f"Unknown Singer message type {message_dict.get('type')!r}: {message_dict!r}"[:300]
        raise InputError(msg)

    @override
    def process_lines(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> collections.Counter[str]:
        """Call the callback of each line's message type; count lines by type."""
        try:
            return self._process_input(file_input, callbacks)
        except Exception as exc:
            if self.on_failure is not None:
                self.on_failure(exc)
            raise

    def _process_input(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        tick, every = self.on_tick, self.tick_seconds
        next_tick = time.monotonic() + every
        for lines in _input_chunks(file_input or self.default_input, tick, every):
            self._process_chunk(lines, callbacks, counts)
            if tick is not None and time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + every
        return counts

    def _process_chunk(
        self,
        lines: t.Iterable[str | bytes],
        callbacks: dict[str, t.Callable[[dict], None]],
        counts: collections.Counter[str],
    ) -> None:
        on_records = self.on_records
        run_stream = ""
        run: list[dict] = []
        for line in lines:
            message = self.deserialize_json(line)
            kind = message.get("type")
            if on_records is not None and kind == "RECORD":
                stream, record = message.get("stream"), message.get("record")
                if type(stream) is str and type(record) is dict:
                    if stream != run_stream:
                        run = self._hand_over(run_stream, run, counts)
                        run_stream = stream
                    run.append(record)
                    continue
            run = self._hand_over(run_stream, run, counts)
            self.assert_line_requires(message, requires={"type"})
            callback = callbacks.get(kind)  # type: ignore[arg-type]
            if callback is None:
                self._process_unknown_message(message)
            else:
                callback(message)
            counts[kind] += 1  # type: ignore[index]
        self._hand_over(run_stream, run, counts)

    def _hand_over(
        self, stream: str, run: list[dict], counts: collections.Counter[str]
    ) -> list[dict]:
        """Pass a run of records on, if there is one; return the list for the next run."""
        if not run:
            return run
        self.on_records(stream, run)  # type: ignore[misc]
        counts["RECORD"] += len(run)
        return []


def _is_utf8(line: str | bytes) -> bool:
    if isinstance(line, str):
        return True
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


def _input_chunks(
    source: t.IO[t.Any], idle: t.Callable[[], None] | None, every: float
) -> t.Iterator[t.Sequence[str | bytes]]:
    """The input's lines, in chunks of whatever was ready to read (binary input), or
    one line at a time (text input, e.g. `--input FILE`). While a pipe has nothing
    to read, `idle` is called every `every` seconds."""
    read1 = getattr(source, "read1", None)
    if read1 is None:
        for line in source:
            yield (line,)
        return
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):  # in-memory input: never waits
        yield from line_chunks(read1)
        return

    def read_when_ready(size: int) -> bytes:
        # The descriptor itself, not the buffered reader: nothing is buffered unseen.
        while not select.select([fd], [], [], every)[0]:
            if idle is not None:
                idle()
        return os.read(fd, size)

    yield from line_chunks(read_when_ready)


def line_chunks(read: t.Callable[[int], bytes]) -> t.Iterator[list[bytes]]:
    """Non-blank lines from `read(size)` calls, a list per read; a line split over
    many reads is joined once."""
    unfinished: list[bytes] = []  # pieces of a line still being read (long lines)
    while data := read(_READ_SIZE):
        if b"\n" not in data:
            unfinished.append(data)
            continue
        if unfinished:
            data = b"".join((*unfinished, data))
        lines = data.split(b"\n")
        unfinished = [lines.pop()]
        yield [line for line in lines if line]  # blank lines carry nothing
    rest = b"".join(unfinished)
    if rest.strip():
        yield [rest]
