"""Helpers of the source tests: run a command in a thread and stop it the SIGTERM way.

Not a test module; imported as `tests.sources.sources_support`.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any

from django.core.management import call_command
from rest_framework.test import APIClient

from tests.api.api_support import all_gpus, stored_samples


class Running:
    """`call_command(command, *args)` in a thread; `stop()` calls its request_stop,
    the same thing its SIGTERM handler does."""

    def __init__(self, command: Any, *args: str) -> None:
        self.command = command
        self.out, self.err = io.StringIO(), io.StringIO()
        self.error: BaseException | None = None
        self.started_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)
        self._thread.start()

    def _run(self, *args: str) -> None:
        try:
            call_command(self.command, *args, stdout=self.out, stderr=self.err)
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 60.0) -> str:
        self.command.request_stop()
        return self.join(timeout)

    def join(self, timeout: float = 60.0) -> str:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the command did not stop:\n{self.output()}"
        if self.error is not None:
            raise AssertionError(f"the command failed: {self.error!r}\n{self.output()}")
        return self.out.getvalue()

    def output(self) -> str:
        return f"stdout:\n{self.out.getvalue()}\nstderr:\n{self.err.getvalue()}"


def stored_by_gpu(api: APIClient) -> dict[str, dict[tuple[int, str], float]]:
    """Every stored sample, per GPU uuid: {(ts, metric): value}."""
    return {gpu["uuid"]: stored_samples(api, gpu["uuid"]) for gpu in all_gpus(api)}


def stored_count(api: APIClient) -> int:
    return sum(len(samples) for samples in stored_by_gpu(api).values())
