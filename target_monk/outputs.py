"""What the target writes: JSON (Decimals as numbers) and local JSON Lines files
(dead letters, dry-run request bodies)."""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path

import msgspec

encode_json = msgspec.json.Encoder(decimal_format="number").encode
"""Compact JSON bytes, Decimal values written as numbers with all their digits."""


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
