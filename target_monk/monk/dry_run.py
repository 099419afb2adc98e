"""The dry run's stand-in for Monk: each request body is handed to a writer (a file),
nothing is sent."""

from __future__ import annotations

import typing as t

from target_monk.monk.events import Receipt


class DryRunClient:
    """Stands in for MonkClient in a dry run: hands each request body to `write` (one
    body per line of a file: no key, nothing sent)."""

    def __init__(self, write: t.Callable[[bytes], None]) -> None:
        """Hand bodies to `write`."""
        self._write = write

    def send_batch(self, body: bytes, what: str, count: int) -> Receipt:
        """Record the body as if Monk had accepted it."""
        self._write(body)
        return Receipt(count=count, request_id="dry-run", attempts=1)

    def stop(self) -> None:
        """Nothing under way to stop."""
