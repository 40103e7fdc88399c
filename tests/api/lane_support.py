"""Two gateways side by side, READ_LANE on and off: ask both the same, compare the answers.

Not a test module; imported by tests/api/test_read_lane.py and tests/shards.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass

HOST = "telemetry.test"  # the same Host to both gateways: `next` links name it
IGNORED = {"date", "server"}
LANE_COUNTER = re.compile(r"^telemetry_read_lane_answers_total\{[^}]*\} ([0-9.e+]+)$", re.M)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Pair:
    lane: str  # host:port of the gateway with READ_LANE on
    django: str  # and with it off

    def ask(
        self, where: str, path: str, headers: dict | list | None = None, method="GET", body=None
    ):
        conn = http.client.HTTPConnection(where, timeout=60)
        try:
            if isinstance(headers, list):  # repeated names, sent as given
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in [("Host", HOST), *headers]:
                    conn.putheader(name, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
            else:  # a list body is sent chunked (no Content-Length)
                conn.request(method, path, body=body, headers={"Host": HOST, **(headers or {})})
            response = conn.getresponse()
            body = response.read()
            # in the order sent, names as sent: the lane's answers are Django's byte for byte
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in IGNORED]
            return Answer(response.status, kept, body)
        finally:
            conn.close()

    def lane_answers(self) -> float:
        return sum(
            float(v) for v in LANE_COUNTER.findall(self.ask(self.lane, "/metrics").body.decode())
        )

    def compare(
        self, path: str, headers: dict | list | None = None, method="GET", body=None
    ) -> tuple[Answer, bool]:
        """(the answer, whether the lane gave it); asserts both gateways answered alike."""
        before = self.lane_answers()
        ours = self.ask(self.lane, path, headers, method, body)
        served = self.lane_answers() > before
        theirs = self.ask(self.django, path, headers, method, body)
        assert ours == theirs, f"{method} {path} {headers}"
        return ours, served
