"""Fixtures: a Monk emulator per test. Helpers live in tests/helpers."""

from __future__ import annotations

import subprocess
import typing as t
from pathlib import Path

import pytest
from helpers import API_KEY, MELTANO, ROOT, end_processes, meltano_env

from target_monk.testing.emulator import MonkEmulator
from target_monk.testing.postgres import PgCluster


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
