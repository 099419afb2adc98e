"""STATE lines on stdout: the bare value, one whole line each, whatever signal
arrives."""

from __future__ import annotations

import os
import sys
import threading
import typing as t

from target_monk.encoding import encode_json

if t.TYPE_CHECKING:
    pass


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
