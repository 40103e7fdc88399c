"""Multiprocess metrics: a scrape never fails on a metrics file a process is still creating."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from observability.metrics import exposition

WRITER = """
from prometheus_client import Counter
Counter("probe_events", "events of a probe process").inc(3)
"""


def test_an_empty_metrics_file_is_skipped_and_the_others_are_read(tmp_path: Path, monkeypatch):
    """A worker child's file exists empty for an instant before it is sized; a scrape then
    answered 500 (struct.error). It is skipped now and every other file still counts."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    subprocess.run([sys.executable, "-c", WRITER], env=env, check=True, timeout=60)
    assert [p.name for p in tmp_path.glob("counter_*.db")]  # the writer's own file
    (tmp_path / "counter_999999.db").touch()  # a process that has just opened its file
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = exposition().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["probe_events_total"] == 3
