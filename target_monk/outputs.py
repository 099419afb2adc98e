"""Local JSON Lines files the target writes: dead letters and dry-run request bodies."""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path

import msgspec

_ENCODER = msgspec.json.Encoder(decimal_format="number")


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
        self.write_encoded(_ENCODER.encode(document))

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
        """Close the file if it was opened."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
