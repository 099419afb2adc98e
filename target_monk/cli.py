"""The command line: `target-monk` runs the target (singer-sdk's command line);
`target-monk reconcile` proves the bill. `main` is the one place that ends the process
and freezes the garbage collector; `run` returns the exit code, so the whole command
line can be driven in-process (testkit's `run_cli`)."""

from __future__ import annotations

import gc
import logging
import os
import sys
import typing as t

import click

from target_monk.errors import TargetMonkError
from target_monk.proof.command import reconcile
from target_monk.singer.target import TargetMonk

logger = logging.getLogger("target-monk")


def main() -> t.NoReturn:
    """`target-monk ...`: run, then end the process with the exit code."""
    TargetMonk.exit_process = staticmethod(exit_now)  # a signal ends the run at once
    # Everything loaded so far (modules, the SDK) lives for the whole run: keep the
    # garbage collector from re-scanning it for every batch.
    gc.freeze()
    exit_now(run(sys.argv[1:]))


def run(argv: t.Sequence[str]) -> int:
    """`reconcile ...`, or else the target; the exit code."""
    if argv[:1] == ["reconcile"]:
        return reconcile(list(argv[1:]), TargetMonk.sdk_settings())
    return run_target(argv)


def run_target(argv: t.Sequence[str]) -> int:
    """The target, through singer-sdk's command line: 0 finished (or --about, --help),
    1 failed (one `target-monk failed:` line), 2 a usage error."""
    command = TargetMonk.cli
    try:
        code = command.main(args=list(argv), prog_name="target-monk", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except TargetMonkError as exc:  # settings refused, or the ledger cannot be opened
        logger.error("target-monk failed: %s", exc)
        return 1
    return int(code or 0)


def exit_now(code: int) -> t.NoReturn:
    """Exit at once, after flushing what was written: no thread may write after this
    (interpreter shutdown would wait for sender threads, which may log and write, and
    a SIGTERM in its last milliseconds would meet the default handler and end the
    process by the signal, with no line, after everything was delivered)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
