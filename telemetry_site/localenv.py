"""The local env file `make run` writes (var/local.env) and every entry point reads.

`make run` (tools/run.py writes it) chooses a secret key, the debug flag and the
endpoints of the etcd and Redis it started; one file lets `manage.py`, `celery` and
`uvicorn` started by hand in a second terminal use the same settings without the
user exporting anything. Variables already set in the environment win over the
file, so an operator's explicit setting is never overridden.

`TELEMETRY_ENV_FILE` names another file, or `off` for none (the test suite's
children, production images). A named file that does not exist is an error; the
default one may be absent (a fresh clone, a deployment).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv import dotenv_values

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "var" / "local.env"


def env_file_path() -> Path | None:
    """The file to read: TELEMETRY_ENV_FILE, else var/local.env; None when turned off."""
    named = os.environ.get("TELEMETRY_ENV_FILE", "").strip()
    if named.lower() == "off":
        return None
    if named:
        path = Path(named)
        if not path.is_file():
            raise ImproperlyConfigured(f"TELEMETRY_ENV_FILE={named!r} is not a readable file")
        return path
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def read(path: Path) -> dict[str, str]:
    """The file's variables (python-dotenv's syntax, the file's own text only)."""
    values = dotenv_values(path, interpolate=False)
    return {name: value for name, value in values.items() if value is not None}


def load() -> Path | None:
    """Put the file's variables into os.environ where unset; returns the file read."""
    path = env_file_path()
    if path is None:
        return None
    for name, value in read(path).items():
        if not os.environ.get(name):
            os.environ[name] = value
    return path
