"""Singer input reader: stdin bytes straight into msgspec (UTF-8 checked, floats as Decimal)."""

from __future__ import annotations

import collections
import sys
import typing as t

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine

_SHOWN_CHARS = 200


class SingerBytesReader(MsgSpecReader):
    """singer-sdk's msgspec reader, reading stdin as bytes, with short errors and a
    tight loop for RECORD lines (the other message types go the SDK's way)."""

    @property
    def default_input(self) -> t.IO[t.Any]:  # type: ignore[override]
        """Standard input as bytes: no text decoding pass before parsing."""
        return sys.stdin.buffer

    def deserialize_json(self, line: str | bytes) -> dict:
        """Parse one line into a message object.

        Raises:
            InvalidInputLine: not JSON, not UTF-8, or not a JSON object.
        """
        try:
            message = decoder.decode(line)
        except (msgspec.DecodeError, UnicodeError) as exc:
            reason = "not valid UTF-8" if isinstance(exc, UnicodeError) else str(exc)
            msg = f"Unable to parse input line as JSON ({reason}): {line[:_SHOWN_CHARS]!r}"
            raise InvalidInputLine(msg) from None
        if type(message) is not dict:
            msg = f"Input line is not a JSON object: {line[:_SHOWN_CHARS]!r}"
            raise InvalidInputLine(msg)
        return message

    def process_lines(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> collections.Counter[str]:
        """Call the callback of each line's message type; count lines by type."""
        counts: collections.Counter[str] = collections.Counter()
        on_record = callbacks["RECORD"]
        records = 0
        for line in file_input or self.default_input:
            self._current_message = line
            message = self.deserialize_json(line)
            kind = message.get("type")
            if kind == "RECORD":
                on_record(message)
                records += 1
            else:
                self.assert_line_requires(message, requires={"type"})
                callback = callbacks.get(kind)  # type: ignore[arg-type]
                if callback is None:
                    self._process_unknown_message(message)
                else:
                    callback(message)
                counts[kind] += 1  # type: ignore[index]
        counts["RECORD"] += records
        return counts
