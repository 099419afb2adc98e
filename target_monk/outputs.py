"""What the target writes: STATE lines on stdout, and local JSON Lines files (dead
letters, dry-run request bodies). Knows nothing of Singer nor of HTTP."""

from __future__ import annotations

import os
import sys
import threading
import typing as t
from pathlib import Path

from target_monk.client import Receipt
from target_monk.encoding import encode_json

if t.TYPE_CHECKING:
    from target_monk.errors import InvalidRecordError, MonkRejectedError
    from target_monk.report import RunReport


class JsonLinesFile:
    """Appends one JSON document per line, from any thread; opened on first write."""

    def __init__(self, path: str | Path) -> None:
        """Remember the path; nothing is created until something is written."""
        self.path = Path(path)
        self.count = 0
        self._lock = threading.Lock()
        self._file: t.BinaryIO | None = None

    def write(self, document: object) -> None:
        """Append `document` as one line (Decimals as numbers, datetimes as ISO text)."""
        self.write_encoded(encode_json(document))

    def write_encoded(self, line: bytes) -> None:
        """Append an already-encoded JSON document as one line."""
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
            self._file.write(line + b"\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        """Close the file (a later write opens it again, to append)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class DeadLetters:
    """The dead-letter file: records that break a rule (`stage: validation`, with the
    record) and events Monk rejected (`stage: monk`, with the event and requestId).
    One object, handed to the sinks and to the sender."""

    def __init__(self, file: JsonLinesFile, report: RunReport) -> None:
        """Write to `file`; count each letter in `report`."""
        self.file = file
        self._report = report

    def invalid(self, error: InvalidRecordError, record: dict[str, t.Any]) -> None:
        """Set aside a record that cannot become a valid event."""
        self.file.write(
            {
                "stream": error.stream,
                "key": error.record_key,
                "stage": "validation",
                "field": error.field,
                "reason": error.reason,
                "record": record,
            }
        )
        self._report.dead_lettered(error.stream)

    def rejected(self, stream: str, event: dict[str, t.Any], error: MonkRejectedError) -> None:
        """Set aside an event Monk rejected on its own (found by splitting its batch)."""
        self.file.write(
            {
                "stream": stream,
                "key": event.get("idempotencyKey"),
                "stage": "monk",
                "field": error.field,
                "reason": f"HTTP {error.status} {error.code}: {error.message}",
                "requestId": error.request_id,
                "event": event,
            }
        )
        self._report.dead_lettered(stream)


class DryRunClient:
    """Stands in for MonkClient in a dry run: writes each request body to a JSON Lines
    file (one body per line, no key, nothing sent)."""

    def __init__(self, bodies: JsonLinesFile) -> None:
        """Write bodies to `bodies`."""
        self.bodies = bodies

    def send_batch(self, body: bytes, label: str, count: int) -> Receipt:
        """Record the body as if Monk had accepted it."""
        self.bodies.write_encoded(body)
        return Receipt(count=count, request_id="dry-run", attempts=1)

    def stop(self) -> None:
        """Nothing under way to stop."""


class StateLines:
    """Writes STATE values to stdout, one whole line each, whatever signal arrives.

    The signal handler runs in the main thread. If that thread is writing a line, the
    line is finished first and the stop happens right after it (`stop_after_line`);
    if a sender thread is, `close()` waits for the line; no line is written after it.
    """

    def __init__(self, write: bool = True) -> None:
        """`write=False` (a dry run) writes nothing, so the bookmark never moves."""
        self._write = write
        self._lock = threading.Lock()
        self._writing_thread: int | None = None
        self._after_line: t.Callable[[], None] | None = None

    def write(self, state: object) -> None:
        """Write the bare state value, exactly as received (Decimals as numbers)."""
        line = encode_json(state) + b"\n"
        with self._lock:
            if not self._write:
                return
            self._writing_thread = threading.get_ident()
            try:
                _write_whole(line)
            finally:
                self._writing_thread = None
        if self._after_line is not None:  # a signal came while this thread wrote
            self._after_line()

    def stop_after_line(self, stop: t.Callable[[], None]) -> bool:
        """From a signal handler: if this thread is writing a line, have `stop` called
        once it is whole and return True; otherwise return False."""
        if self._writing_thread == threading.get_ident():
            self._after_line = stop
            return True
        return False

    def close(self) -> None:
        """Wait for any line being written by another thread; write none after."""
        with self._lock:
            self._write = False


def _write_whole(line: bytes) -> None:
    """Write all of `line` to stdout. Straight to the descriptor: a signal handler
    that runs during a blocked write of Python's buffered stdout can leave the rest
    of the line unwritten; os.write resumes after it and reports partial writes."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced in-process
        sys.stdout.write(line.decode())
        sys.stdout.flush()
        return
    sys.stdout.flush()
    view = memoryview(line)
    while view:
        view = view[os.write(fd, view) :]
