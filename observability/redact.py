"""Secrets out of the ASGI server's logs: `token=<key>` in logged paths becomes `token=[redacted]`.

uvicorn logs every WebSocket handshake with its query string (on `uvicorn.error`)
and every HTTP request with its query string (on `uvicorn.access`); browsers can
only pass an API token to a WebSocket that way.
"""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"((?:^|[?&;])(?:token|access_token|api_key)=)[^&;#\s\"']*", re.IGNORECASE)
LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """`text` with the value of every token-like query parameter replaced.

    >>> redact('127.0.0.1:5 - "WebSocket /ws/telemetry/?token=9f8e7d&x=1" [accepted]')
    '127.0.0.1:5 - "WebSocket /ws/telemetry/?token=[redacted]&x=1" [accepted]'
    >>> redact("/api/v1/gpus?tokens=3")  # another parameter: left alone
    '/api/v1/gpus?tokens=3'
    """
    return _SECRET.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message and string arguments before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log() -> None:
    """Install `RedactTokens` on the ASGI server's loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
