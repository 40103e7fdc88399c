"""The `reads` throttle of an anonymous caller, keyed by the address the nearest proxy saw."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from tests.security.conftest import start


def test_a_caller_cannot_escape_the_throttle_by_naming_other_addresses(
    etcd, redis_server, tmp_path: Path
):
    # one proxy in front, appending the caller it saw (203.0.113.7) after what the caller wrote
    gateway = start(
        tmp_path, etcd.url, redis_server.url, THROTTLE_READS="3/min", THROTTLE_NUM_PROXIES="1"
    )
    try:
        statuses = [
            _status(f"{gateway.url}/api/v1/clusters", f"10.0.0.{i}, 203.0.113.7") for i in range(6)
        ]
        other = _status(f"{gateway.url}/api/v1/clusters", "10.0.0.1, 203.0.113.8")
    finally:
        gateway.service.stop()
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429, 429], statuses
    assert other == 200  # another caller behind the proxy has a budget of its own


def _status(url: str, forwarded_for: str) -> int:
    request = urllib.request.Request(url, headers={"X-Forwarded-For": forwarded_for})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
