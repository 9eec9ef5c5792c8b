"""Lines for the end of a test run's output, even a quiet one: tests/conftest.py prints them.

The key lives here, not in conftest.py: pytest imports conftest.py as a module of its own, apart
from ``tests.conftest``, so a key defined there would be two keys.
"""
from __future__ import annotations

import pytest

NOTES = pytest.StashKey[list[str]]()


def note(config: pytest.Config, line: str) -> None:
    """Print ``line`` once at the end of the run."""
    config.stash.setdefault(NOTES, []).append(line)
