"""Every environment variable the code reads is in the settings table of the docs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = (REPO / "docs" / "OPERATIONS.md").read_text()


def variables_read() -> set[str]:
    settings = (REPO / "telemetry_site" / "settings.py").read_text()
    names = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', settings))
    for path in [*REPO.glob("telemetry_site/*.py"), *REPO.glob("observability/*.py")]:
        names |= set(re.findall(r'os\.environ(?:\.get)?\(\s*"([A-Z][A-Z0-9_]+)"', path.read_text()))
    return names - {"DJANGO_SETTINGS_MODULE"}


def test_every_variable_read_is_documented():
    names = variables_read()
    assert len(names) > 40
    missing = sorted(n for n in names if f"`{n}" not in TABLE)
    assert not missing, f"add these to the settings table of docs/OPERATIONS.md: {missing}"
