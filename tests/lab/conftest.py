"""The lab's tests: ``test_lab.py`` runs ``scripts/lab --quick`` (marked ``lab``: skip it
locally with ``pytest -m "not lab"``; ``scripts/test`` and CI run it); the others test
the scenario's data and the report's arithmetic."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``lab`` marker (the whole-lab runs, several minutes)."""
    config.addinivalue_line("markers", "lab: runs scripts/lab (minutes; -m 'not lab' skips)")
