"""`target-monk reconcile`: its arguments, the range of days, the verdict and the exit
code (0 all matched, 1 differences, 2 could not check)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import typing as t
from pathlib import Path

import msgspec
from typing_extensions import override

from target_monk.errors import TargetMonkError
from target_monk.monk.reads import MonkReader, RateLimit
from target_monk.proof.compare import DIFFERENCES
from target_monk.proof.ledger import Ledger, utc_now_text
from target_monk.proof.reconciler import Reconciler
from target_monk.proof.report import ReconcileReport
from target_monk.proof.resend import resend_missing
from target_monk.settings import Settings, load_config

logger = logging.getLogger("target-monk")

RECENT_HOURS = 24
"""By default, reconcile checks the days delivered by the runs of the last this many hours."""


class _Parser(argparse.ArgumentParser):
    """Bad arguments end in the one failure line too (exit 2: nothing was checked)."""

    @override
    def error(self, message: str) -> t.NoReturn:
        self.exit(2, f"target-monk failed: reconcile: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="target-monk reconcile",
        description=(
            "Compare the delivery ledger with the events Monk lists, per customer and UTC "
            "day. Exit 0: Monk holds every event the ledger has (pending ones aside); "
            "1: differences; 2: could not check."
        ),
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE|ENV",
        help="target-monk's config file(s), or ENV for TARGET_MONK_* variables (as Meltano sets)",
    )
    parser.add_argument("--start", type=_date, help="first day (UTC, inclusive)")
    parser.add_argument(
        "--end",
        type=_date,
        help=(
            "last day (UTC, inclusive). Default: the days the runs of the last "
            f"{RECENT_HOURS} hours delivered (or the last run's)"
        ),
    )
    parser.add_argument(
        "--sample",
        type=_fraction,
        metavar="FRACTION",
        help="check only this fraction of the customer-days (e.g. 0.05), chosen by hash",
    )
    parser.add_argument("--seed", type=int, default=0, help="which sample (default 0)")
    parser.add_argument(
        "--resend-missing",
        action="store_true",
        help="post the missing events again, exactly as sent (same keys: harmless)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("target-monk-reconcile.json"),
        help="the JSON report (default target-monk-reconcile.json); an interrupted "
        "reconcile resumes from REPORT.partial",
    )
    parser.add_argument(
        "--restart", action="store_true", help="forget an interrupted reconcile's progress"
    )
    parser.add_argument("--all-rows", action="store_true", help="print matching customer-days too")
    return parser


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"not a date (YYYY-MM-DD): {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        msg = f"a fraction above 0 and at most 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def reconcile(argv: list[str], sdk_settings: t.Iterable[str] = ()) -> int:
    """`target-monk reconcile`: 0 all matched, 1 differences, 2 could not check.
    `sdk_settings`: the names of singer-sdk's built-in settings a config may hold."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or bad arguments (2, said in one line)
        return int(exc.code or 0)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    on_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C
    ledger: Ledger | None = None
    try:
        settings = _settings(args.config, sdk_settings)
        if settings.ledger_location is None:
            msg = "the ledger is off (ledger: false): there is nothing to reconcile against"
            raise TargetMonkError(msg)
        ledger = Ledger(settings.ledger_location)
        events = ledger.materialize()
        logger.info(
            "Ledger: %d events recorded since the last reconcile, now one row per key", events
        )
        start, end = _range(args, ledger)
        resume_file = args.report.with_name(args.report.name + ".partial")
        if args.restart:
            resume_file.unlink(missing_ok=True)
        reader = MonkReader(
            settings.read_api_url,
            settings.api_key,
            limit=RateLimit(settings.reconcile_requests_per_minute),
            timeout=settings.request_timeout_seconds,
            max_retries=settings.max_retries,
            backoff_seconds=settings.retry_backoff_seconds,
            max_wait_seconds=settings.max_retry_wait_seconds,
        )
        logger.info(
            "Reconciling %s to %s%s: ledger %s, Monk %s",
            start,
            end,
            f" (a {args.sample:g} sample)" if args.sample else "",
            ledger.location,
            reader.url,
        )
        reconciler = Reconciler(ledger, reader, settings.reconcile_settle_seconds)
        report = reconciler.run(start, end, args.sample, args.seed, resume_file)
        if args.resend_missing and report.totals()["missing"]:
            client = settings.monk_client()
            resent = resend_missing(report, ledger, client, settings.batch_size_rows)
            logger.info("Resent %d missing events; Monk accepted them", resent)
    except KeyboardInterrupt:
        logger.error(
            "target-monk failed: reconcile interrupted; run the same command again to "
            "resume where it stopped"
        )
        return 2
    except TargetMonkError as exc:
        logger.error("target-monk failed: reconcile could not check: %s", exc)
        return 2
    finally:  # as they were (reconcile may run inside another program, or a test)
        logger.removeHandler(handler)
        logger.setLevel(level)
        signal.signal(signal.SIGTERM, on_sigterm)
        if ledger is not None:
            ledger.close()
    args.report.write_bytes(msgspec.json.format(msgspec.json.encode(report.to_json())) + b"\n")
    print(report.table(args.all_rows))
    print(_verdict(report, args.report))
    return 1 if report.differs else 0


def _settings(sources: list[str], sdk_settings: t.Iterable[str]) -> Settings:
    """The target's settings from config files and/or ENV (TARGET_MONK_* variables)."""
    return Settings.from_config(load_config(sources, os.environ), sdk_settings)


def _range(args: argparse.Namespace, ledger: Ledger) -> tuple[dt.date, dt.date]:
    """--start and --end, or the days recent runs delivered."""
    if args.start and args.end:
        if args.end < args.start:
            msg = f"--end {args.end} is before --start {args.start}"
            raise TargetMonkError(msg)
        return args.start, args.end
    days = ledger.days_of_runs_since(utc_now_text(ago=dt.timedelta(hours=RECENT_HOURS)))
    if days is None:
        msg = f"the ledger at {ledger.location} has no delivered events: give --start and --end"
        raise TargetMonkError(msg)
    return (
        args.start or dt.date.fromisoformat(days[0]),
        args.end or dt.date.fromisoformat(days[1]),
    )


def _verdict(report: ReconcileReport, path: Path) -> str:
    totals = report.totals()
    scope = f"{report.start} to {report.end}, {report.customers} customers"
    if report.sample:
        scope += f", a {report.sample:g} sample of the customer-days"
    pending = f"; {totals['pending']} pending (accepted within the settle time)"
    tail = (pending if totals["pending"] else "") + f". Report: {path}"
    if not report.differs:
        matched = totals["matched"]
        return f"Match: Monk holds the {matched:,} events the ledger has ({scope}){tail}"
    found = ", ".join(f"{totals[k]} {k}" for k in DIFFERENCES if totals[k])
    if totals["resent"]:
        found += " (Monk accepted the resent ones: reconcile again after the settle time)"
    return (
        f"Differences ({scope}): {found}{tail}. What to do with each kind: the docs, "
        "'Proving the bill'"
    )
