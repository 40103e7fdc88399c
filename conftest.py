"""Doctests run with the suite (`--doctest-modules` in pyproject.toml) for the store and the
leaves (`DOCTESTED`): docs/STORAGE.md cites the key layout's doctests, so they must pass.

The tests' own modules are not collected for doctests: they hold none, and importing them a
second time by basename would clash (several directories have a `conftest.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
DOCTESTED = ("store", "timeparse", "observability")


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    collected = yield
    path = file_path.resolve()
    if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in DOCTESTED:
        return collected
    return [c for c in collected if type(c).__name__ != "DoctestModule"]
