"""The run's local files: JSON Lines appended from any thread, and the dead letters.
Knows nothing of Singer nor of HTTP."""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path

from target_monk.encoding import encode_json

if t.TYPE_CHECKING:
    from target_monk.errors import InvalidRecordError, MonkRejectedError
    from target_monk.run.summary import RunSummary


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

    def __init__(self, file: JsonLinesFile, report: RunSummary) -> None:
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
