"""target-monk, deliberately broken, for tests/e2e/test_chaos_suite.py to show that the
chaos suite catches each way of breaking it:

    python testkit/sabotage.py MODE --config config.json

Modes: the three violations issue #19's chaos run found, brought back (`schema-late`,
`cut-not-retried`, `late-signal`), and four more (`state-early`, `drop-record`,
`stale-version`, `ledger-early`).
"""

from __future__ import annotations

import sys
import typing as t

from target_monk import cli
from target_monk.monk import http
from target_monk.run.delivery import Delivery
from target_monk.run.run import Run
from target_monk.run.sender import Sender


def state_early() -> None:
    """STATE written as soon as it arrives, accepted or not."""

    def release(self: Delivery) -> None:
        if self._states:
            newest = self._states[-1][1]
            self._states.clear()
            if newest != self._last_written:
                self._write_state(newest)
                self._last_written = newest

    Delivery._release_states = release  # type: ignore[method-assign]


def drop_record() -> None:
    """The 5th record of the run is lost (but counted)."""
    original = Run.add_records
    seen = [0]

    def add_records(self: Run, buffer: t.Any, records: list[dict]) -> None:
        kept = []
        for record in records:
            seen[0] += 1
            if seen[0] != 5:
                kept.append(record)
        original(self, buffer, kept)

    Run.add_records = add_records  # type: ignore[method-assign]


def stale_version() -> None:
    """Of two versions of a key in one batch, the earlier is sent."""
    original = Delivery.submit

    def submit(self: Delivery, holder: t.Any, events: list[dict], stream: str) -> None:
        original(self, holder, events[::-1], stream)

    Delivery.submit = submit  # type: ignore[method-assign]


def ledger_early() -> None:
    """Requests are recorded in the ledger before Monk answers them."""
    original = Sender._post

    def post(self: Sender, stream: str, events: list[dict], body: bytes, what: str) -> None:
        if self.ledger is not None:
            self.ledger.record(stream, body, len(events), "not-yet-answered")
        original(self, stream, events, body, what)

    Sender._post = post  # type: ignore[method-assign]


def schema_late() -> None:
    """A repeated SCHEMA no longer sends the replaced buffer first (it is drained at the
    end, after later versions of its keys)."""
    original = Run.open_stream

    def open_stream(self: Run, stream: str, *args: t.Any) -> t.Any:
        self._buffers.pop(stream, None)
        return original(self, stream, *args)

    Run.open_stream = open_stream  # type: ignore[method-assign, assignment]


def cut_not_retried() -> None:
    """An answer cut off mid-body fails the run instead of being retried."""
    original = http.transport_failure

    def transport_failure(
        error: BaseException, timeout: float, setting: str = "api_url"
    ) -> tuple[str, bool]:
        reason, retried = original(error, timeout, setting)
        return reason, retried and "cut off" not in reason

    http.transport_failure = transport_failure


def late_signal() -> None:
    """A finished run ends through the interpreter's shutdown again, where a SIGTERM meets
    the default handler."""
    original = cli.exit_now

    def exit_now(code: int) -> t.NoReturn:
        if code == 0:
            sys.exit(0)
        original(code)

    cli.exit_now = exit_now


MODES: dict[str, t.Callable[[], None]] = {
    "state-early": state_early,
    "drop-record": drop_record,
    "stale-version": stale_version,
    "schema-late": schema_late,
    "cut-not-retried": cut_not_retried,
    "late-signal": late_signal,
    "ledger-early": ledger_early,
}

if __name__ == "__main__":
    MODES[sys.argv.pop(1)]()
    cli.main()
