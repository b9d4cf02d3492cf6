"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture
def fault_names(monkeypatch):
    """Suites in this test may name the fault-injection doubles (``fault-*`` models, ``tiny`` dataset)."""
    monkeypatch.syspath_prepend(str(FAULTS))
    import fault_names as names

    names.accept(monkeypatch.setattr)
