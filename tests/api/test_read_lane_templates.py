"""A plain answer the lane sent through Django's response steps gives later ones like it their
headers (telemetry_site/lane.py::_Templates): the same bytes as the steps give, each answer's
own length and coding, and a setting the steps read, once changed, is read again."""

from __future__ import annotations

import asyncio
import gzip
import io

import orjson
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse

from apps.read.prometheus import views as prom_views
from telemetry_site import lane

PATH = "/prometheus/api/v1/query_range"


def scope(accept_encoding: str | None) -> dict:
    headers = [(b"host", b"testserver")]
    if accept_encoding is not None:
        headers.append((b"accept-encoding", accept_encoding.encode()))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip


def sent(body: bytes, accept_encoding: str | None = "gzip") -> tuple[list, bytes]:
    """(headers, body) the lane sends for a Prometheus answer holding `body`."""
    request = ASGIRequest(scope(accept_encoding), io.BytesIO())
    the_lane = lane.ReadLane(None, lane.ASGIHandler())  # type: ignore[arg-type]
    match = the_lane._route(PATH)
    view = prom_views.query_range.view_class()  # type: ignore[attr-defined]
    answer = lane.Answer(HttpResponse(body, content_type="application/json"), view, True)
    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(the_lane._send(request, match, answer, send, 0.0))
    return messages[0]["headers"], b"".join(m.get("body", b"") for m in messages[1:])


def answer(points: int) -> bytes:
    values = [[1_700_000_000 + 60 * i, str(i % 7)] for i in range(points)]
    return orjson.dumps({"status": "success", "data": {"result": [{"values": values}]}})


def test_later_answers_get_the_steps_headers_with_their_own_length_and_coding(settings):
    lane._templates.clear()
    first_headers, first_body = sent(answer(300))
    assert lane._templates, "the answer was not kept as a template"
    again_headers, again_body = sent(answer(300))
    assert (again_headers, again_body) == (first_headers, first_body)

    small_headers, small_body = sent(answer(100))  # another length, same template
    lane._templates.clear()
    assert sent(answer(100)) == (small_headers, small_body)  # as the steps make it
    assert gzip.decompress(small_body) == answer(100)

    plain = sent(answer(300), accept_encoding=None)  # no coding asked: another template
    assert dict(plain[0]).get(b"Content-Encoding") is None and plain[1] == answer(300)
    assert dict(first_headers)[b"Content-Encoding"] == b"gzip"


def test_a_changed_setting_is_read_again(settings):
    lane._templates.clear()
    sent(answer(300))
    assert dict(sent(answer(300))[0])[b"X-Frame-Options"] == b"DENY"
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"
    assert dict(sent(answer(300))[0])[b"X-Frame-Options"] == b"SAMEORIGIN"
