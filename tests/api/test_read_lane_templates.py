"""A plain answer the lane sent through Django's response steps gives later ones like it their
headers (telemetry_site/lane.py::_Templates): the same bytes as the steps give, each answer's
own length and coding; an answer differing in what decides the headers (a caller's session,
HTTPS, the coding, the type) takes the steps, an answer with another header (a partial
shard's) is never a template, and a setting the steps read, once changed, is read again."""

from __future__ import annotations

import asyncio
import gzip
import io

import orjson
import pytest
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse

from apps.read.prometheus import views as prom_views
from store import shards
from telemetry_site import lane

PATH = "/prometheus/api/v1/query_range"


def scope(accept_encoding: str | None, https: bool) -> dict:
    headers = [(b"host", b"testserver")]
    if accept_encoding is not None:
        headers.append((b"accept-encoding", accept_encoding.encode()))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "https" if https else "http", "path": PATH, "raw_path": PATH.encode(),
        "query_string": b"", "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }  # fmt: skip


class Sender:
    """One lane (its templates live as long), counting the answers that took the steps."""

    def __init__(self) -> None:
        self.lane = lane.ReadLane(None, lane.ASGIHandler())  # type: ignore[arg-type]
        self.steps = 0
        frames = self.lane.frames.process_response

        def counted(request, response):  # the first of the steps a template skips
            self.steps += 1
            return frames(request, response)

        self.lane.frames.process_response = counted  # type: ignore[method-assign]

    def send(
        self,
        body: bytes,
        accept_encoding: str | None = "gzip",
        https: bool = False,
        touched: bool = True,
        content_type: str = "application/json",
        partial: shards.Partial | None = None,
    ) -> tuple[list, bytes]:
        request = ASGIRequest(scope(accept_encoding, https), io.BytesIO())
        match = self.lane._route(PATH)
        view = prom_views.query_range.view_class()  # type: ignore[attr-defined]
        response = HttpResponse(body, content_type=content_type)
        answer = lane.Answer(response, view, touched, partial)
        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        asyncio.run(self.lane._send(request, match, answer, send, 0.0))
        return messages[0]["headers"], b"".join(m.get("body", b"") for m in messages[1:])


def answer(points: int) -> bytes:
    values = [[1_700_000_000 + 60 * i, str(i % 7)] for i in range(points)]
    return orjson.dumps({"status": "success", "data": {"result": [{"values": values}]}})


@pytest.fixture
def sender(settings) -> Sender:
    settings.SECURE_HSTS_SECONDS = 3600  # HTTPS answers carry HSTS, plain ones do not
    return Sender()


def test_later_answers_take_the_template_with_their_own_length_and_coding(sender):
    first = sender.send(answer(300))
    assert sender.steps == 1 and sender.lane.templates.held
    assert sender.send(answer(300)) == first and sender.steps == 1  # the template's
    other = sender.send(answer(100))  # another length and body: the same template
    assert sender.steps == 1
    assert Sender().send(answer(100)) == other  # as the steps make it
    assert gzip.decompress(other[1]) == answer(100)
    assert dict(first[0])[b"Content-Encoding"] == b"gzip"


@pytest.mark.parametrize(
    "differs",
    [
        {"touched": False},  # a token's caller: no Vary: Cookie
        {"https": True},  # HSTS
        {"accept_encoding": None},  # not compressed
        {"accept_encoding": "br"},
        {"accept_encoding": "zstd"},
        {"content_type": "application/json; charset=utf-8"},
    ],
)
def test_an_answer_differing_in_what_decides_the_headers_takes_the_steps(sender, differs):
    sender.send(answer(300))
    sender.send(answer(300))
    steps = sender.steps
    got = sender.send(answer(300), **differs)
    assert sender.steps == steps + 1  # not the first one's template
    assert got == Sender().send(answer(300), **differs)
    assert sender.send(answer(300), **differs) == got and sender.steps == steps + 1  # its own


def test_a_body_too_small_to_compress_is_sent_as_it_is(sender):
    sender.send(answer(300))
    small = sender.send(answer(10))  # under compression's MIN_SIZE, gzip asked
    assert small[1] == answer(10) and b"Content-Encoding" not in dict(small[0])
    assert small == Sender().send(answer(10))


def test_a_partial_answer_is_never_a_template(sender):
    partial = shards.Partial()
    partial.add("prod-b", "etcd shard prod-b is unavailable")
    marked = sender.send(answer(300), partial=partial)
    assert dict(marked[0])[b"X-Telemetry-Partial"] == b"prod-b"
    healthy = sender.send(answer(300))
    assert b"X-Telemetry-Partial" not in dict(healthy[0])
    assert sender.send(answer(300)) == healthy


def test_a_changed_setting_is_read_again(sender, settings):
    sender.send(answer(300))
    assert dict(sender.send(answer(300))[0])[b"X-Frame-Options"] == b"DENY"
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"
    assert dict(sender.send(answer(300))[0])[b"X-Frame-Options"] == b"SAMEORIGIN"


def test_request_finished_has_only_the_receivers_a_plain_answer_may_skip() -> None:
    """A plain answer does not send request_finished (lane.FINISHED_RECEIVERS says why);
    a receiver connected anywhere else would then miss the lane's answers."""
    from django.core.handlers.asgi import ASGIHandler  # noqa: F401  connects reset_urlconf

    assert lane.finished_receivers() == lane.FINISHED_RECEIVERS


def test_a_lane_made_with_another_receiver_closes_its_plain_answers(
    settings, django_db_blocker
) -> None:
    from django.core.signals import request_finished

    usual = Sender()  # made with Django's receivers only
    finished: list[object] = []

    def receiver(sender: object, **kwargs: object) -> None:
        finished.append(sender)

    request_finished.connect(receiver)
    # request_finished's close_old_connections checks every connection open on asgiref's
    # shared thread, which an earlier test of this xdist worker may have left open there;
    # pytest-django refuses that check outside a database test (seen once: RuntimeError)
    with django_db_blocker.unblock():
        try:
            for _ in range(2):  # the first takes the steps (closed), the second its template
                usual.send(answer(200))
            assert len(finished) == 1 and usual.steps == 1
            careful = Sender()  # made with a receiver of ours connected
            for _ in range(2):
                careful.send(answer(200))
            assert len(finished) == 3 and careful.steps == 1
        finally:
            request_finished.disconnect(receiver)
