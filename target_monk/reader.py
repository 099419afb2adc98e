"""Singer input reader: stdin bytes straight into msgspec (UTF-8 checked, floats as Decimal)."""

from __future__ import annotations

import sys
import typing as t

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine

_SHOWN_CHARS = 200


class SingerBytesReader(MsgSpecReader):
    """Like singer-sdk's msgspec reader, but reads stdin as bytes and keeps errors short."""

    @property
    def default_input(self) -> t.IO[t.Any]:  # type: ignore[override]
        """Standard input as bytes: no text decoding pass before parsing."""
        return sys.stdin.buffer

    def deserialize_json(self, line: str | bytes) -> dict:
        """Parse one line; a bad one raises InvalidInputLine naming the problem.

        Raises:
            InvalidInputLine: not JSON, or not UTF-8.
        """
        try:
            return decoder.decode(line)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, UnicodeError) as exc:
            shown = line[:_SHOWN_CHARS]
            reason = "not valid UTF-8" if isinstance(exc, UnicodeError) else str(exc)
            msg = f"Unable to parse input line as JSON ({reason}): {shown!r}"
            raise InvalidInputLine(msg) from None
