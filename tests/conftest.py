"""Fixtures: a Monk emulator per test. Helpers live in tests/helpers."""

from __future__ import annotations

import typing as t

import pytest
from helpers import API_KEY, end_processes
from monk_emulator import MonkEmulator


@pytest.fixture
def emulator() -> t.Iterator[MonkEmulator]:
    """A strict emulator on 127.0.0.1, started for the test and stopped after it."""
    with MonkEmulator(API_KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def target_processes() -> t.Iterator[None]:
    """Every target process a test started is ended and its pipes closed after it."""
    yield
    end_processes()
