"""Structured logs: JSON lines when LOG_FORMAT=json, and the ingest job id on every line
logged while a job is being parsed or one of its chunks persisted."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

_job: contextvars.ContextVar[str] = contextvars.ContextVar("telemetry_job", default="")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "job", "job_tag"}


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every log line inside carries `job=<job_id>`."""
    token = _job.set(job_id)
    try:
        yield
    finally:
        _job.reset(token)


class JobFilter(logging.Filter):
    """Adds `record.job` (empty outside a job) and `record.job_tag` (` [job=…]`, or nothing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = getattr(record, "job", "") or _job.get()
        record.job_tag = f" [job={record.job}]" if record.job else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job, any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "job", ""):
            body["job"] = record.job
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def logging_config(fmt: str, level: str) -> dict:
    """The LOGGING dict for settings: `plain` or `json` lines on stderr."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"LOG_FORMAT={fmt!r}: use plain or json")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job": {"()": "observability.logs.JobFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(job_tag)s %(message)s"},
            "json": {"()": "observability.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["job"]}
        },
        "root": {"handlers": ["console"], "level": level.upper()},
        # Django gives its `django` logger a console handler of its own under DEBUG
        # (DEFAULT_LOGGING); with the root's, every warning would print twice.
        "loggers": {"django": {"handlers": [], "propagate": True}},
    }
