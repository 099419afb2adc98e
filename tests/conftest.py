"""The test tiers (by directory: unit/, e2e/, integration/), the --max-in-flight
option, and the fixtures: a Monk emulator per test, a PostgreSQL cluster, Meltano's
plugins. Helpers live in the repository's testkit/."""

from __future__ import annotations

import fcntl
import subprocess
import typing as t
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from testkit import processes
from testkit.postgres import PgCluster
from testkit.processes import API_KEY, MELTANO, ROOT, end_processes, meltano_env

TIERS = {
    "unit": "in-process: no target process, no Meltano (scripts/test --unit)",
    "e2e": "the target as a process against the emulator",
    "integration": "Meltano, PostgreSQL, real taps from PyPI, Dagster",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--max-in-flight",
        type=int,
        default=4,
        help="max_in_flight of the tests' configs (scripts/test reruns -m in_flight with 1 and 8)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for tier, what in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: {what}")
    config.addinivalue_line(
        "markers", "meltano_project: runs Meltano in this project (one at a time)"
    )
    processes.DEFAULTS["max_in_flight"] = config.getoption("--max-in-flight")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its tier, from its directory; a test that runs Meltano
    in this project (the `meltano_plugins` fixture, or `orchestrate`) is integration
    wherever it lives, and marked `meltano_project`."""
    for item in items:
        tier = item.path.parent.name
        assert tier in TIERS, f"{item.nodeid}: tests live in tests/unit, e2e or integration"
        in_project = "meltano_plugins" in getattr(item, "fixturenames", ()) or bool(
            item.get_closest_marker("orchestrate")
        )
        item.add_marker("integration" if in_project else tier)
        if in_project:
            item.add_marker("meltano_project")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> t.Iterator[None]:
    """Tests that run Meltano in this project run one at a time, whichever xdist worker
    runs them: Meltano keeps a plugin's run files under .meltano/run/<plugin>/, which
    two runs of one plugin at once would overwrite (and `meltano install` too)."""
    if item.get_closest_marker("meltano_project") is None:
        return (yield)
    (ROOT / ".meltano").mkdir(exist_ok=True)
    with (ROOT / ".meltano" / "tests.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def emulator() -> t.Iterator[MonkEmulator]:
    """A strict emulator on 127.0.0.1, started for the test and stopped after it."""
    with MonkEmulator(API_KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory: the files a target writes by default (its
    ledger, dead letters, deleted rows) never land in the checkout or in another test."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def target_processes() -> t.Iterator[None]:
    """Every target process a test started is ended and its pipes closed after it."""
    yield
    end_processes()


@pytest.fixture(scope="session")
def meltano_plugins() -> None:
    """Install the project's Meltano plugins once (offline: all declared inline)."""
    subprocess.run(
        [MELTANO, "install"],
        cwd=ROOT,
        env=meltano_env({}),
        check=True,
        capture_output=True,
        timeout=900,
    )


@pytest.fixture
def pg(tmp_path: Path) -> t.Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster with the guide's billing_events table."""
    cluster = PgCluster(tmp_path / "pg").start()
    yield cluster
    cluster.stop()
