"""Response compression negotiated with the client: zstd, br or gzip (RFC 9110 Accept-Encoding).

Django's GZipMiddleware knows only gzip, at a level tuned for size rather than
speed. Telemetry answers are large (a day of one GPU is ~8 MB of JSON) and
compress ~10x, so the encoder's speed matters as much as the ratio: zstd level
3 and brotli quality 4 compress several times faster than zlib's gzip level 6 at
a better ratio. Gzip, what Grafana's proxy and most programs ask for, is made by
ISA-L (`isal`) at its default level 2: ~9x faster than zlib level 5 on our JSON
(0.06 vs 0.54 ms for one GPU's day at 60 s, the bulk of a small query's CPU),
2-11 % larger, with less memory per stream than zlib's (docs/PERFORMANCE.md).

The client chooses with q-values; among equal ones we prefer zstd, then br,
then gzip. Streamed answers (CSV exports) are compressed piece by piece and
flushed after each piece, so they still stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import brotli
import zstandard
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_vary_headers
from isal import isal_zlib

from observability.middleware import DualStackMiddleware

MIN_SIZE = 1024  # below this the headers cost more than compression saves
OFF_LOOP_SIZE = 256 * 1024
PREFERENCE = ("zstd", "br", "gzip")
GZIP_LEVEL = isal_zlib.ISAL_DEFAULT_COMPRESSION  # 2 of 0-3
# Media types made of text (JSON and its +json kinds, OpenAPI, scripts, XML, SVG).
_TEXT_KINDS = ("json", "javascript", "xml", "openapi", "yaml", "csv")


class _Stream(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...
    def finish(self) -> bytes: ...


class _Zstd:
    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(level=3).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._c.flush()


class _Brotli:
    def __init__(self) -> None:
        self._c = brotli.Compressor(quality=4)

    def compress(self, data: bytes) -> bytes:
        return self._c.process(data)

    def flush(self) -> bytes:
        return self._c.flush()

    def finish(self) -> bytes:
        return self._c.finish()


class _Gzip:
    def __init__(self) -> None:
        # 31: gzip header and trailer
        self._c = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush(isal_zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(isal_zlib.Z_FINISH)


ENCODERS: dict[str, Callable[[], _Stream]] = {"zstd": _Zstd, "br": _Brotli, "gzip": _Gzip}


def choose(accept_encoding: str) -> str | None:
    """The coding to answer with, or None for identity.

    >>> choose("gzip, deflate, br, zstd"), choose("gzip;q=1, br;q=0.5"), choose("*;q=0")
    ('zstd', 'gzip', None)
    >>> choose("br;q=0, *"), choose(""), choose("identity")
    ('zstd', None, None)
    """
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name:
            weights[name.strip()] = q
    star = weights.get("*", 0.0)
    offered = [(weights.get(c, star), -i, c) for i, c in enumerate(PREFERENCE)]
    q, _, coding = max(offered)
    return coding if q > 0 else None


def _compressible(response: HttpResponseBase) -> bool:
    if response.has_header("Content-Encoding") or response.status_code in (204, 206, 304):
        return False
    if not _text(response.get("Content-Type", "")):
        return False
    return response.streaming or len(response.content) >= MIN_SIZE


def _text(content_type: str) -> bool:
    media = content_type.lower().partition(";")[0]
    return media.startswith("text/") or any(kind in media for kind in _TEXT_KINDS)


def coding_for(chosen: str | None, content_type: str, size: int) -> str | None:
    """What `planned` gives a 200 answer of `size` bytes with only a Content-Type, to a
    request whose Accept-Encoding `choose` read as `chosen`."""
    return chosen if chosen is not None and size >= MIN_SIZE and _text(content_type) else None


def planned(request: HttpRequest, response: HttpResponseBase) -> str | None:
    """The coding `compress` gives `response` (None: left as it is)."""
    coding = choose(request.META.get("HTTP_ACCEPT_ENCODING", ""))
    return coding if coding is not None and _compressible(response) else None


def encoded(coding: str, content: bytes) -> bytes:
    """A whole body in `coding`, as `compress` encodes it."""
    encoder = ENCODERS[coding]()
    return encoder.compress(content) + encoder.finish()


def compress(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """`response` encoded as the request's Accept-Encoding prefers (or as it was)."""
    patch_vary_headers(response, ("Accept-Encoding",))
    coding = planned(request, response)
    if coding is None:
        return response
    if response.streaming:
        encoder = ENCODERS[coding]()
        if response.is_async:
            response.streaming_content = _async_pieces(response.streaming_content, encoder)
        else:
            response.streaming_content = _pieces(response.streaming_content, encoder)
        del response["Content-Length"]
    else:
        response.content = encoded(coding, response.content)
        response["Content-Length"] = str(len(response.content))
    etag = response.get("ETag")
    if etag and etag.startswith('"'):
        response["ETag"] = "W/" + etag  # the bytes differ from the identity ones
    response["Content-Encoding"] = coding
    return response


def _pieces(content: Iterator[bytes], encoder: _Stream) -> Iterator[bytes]:
    for piece in content:
        out = encoder.compress(piece) + encoder.flush()
        if out:
            yield out
    yield encoder.finish()


async def _async_pieces(content: AsyncIterator[bytes], encoder: _Stream) -> AsyncIterator[bytes]:
    async for piece in content:
        out = encoder.compress(piece) + encoder.flush()
        if out:
            yield out
    yield encoder.finish()


class CompressionMiddleware(DualStackMiddleware):
    """Applies `compress` to every response (sync and async stacks)."""

    def call(self, request: HttpRequest) -> Any:
        return compress(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> Any:
        return await acompress(request, await self.get_response(request))  # type: ignore[misc]


async def acompress(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """`compress` on the event loop, a large body off it (also the read lane's); a body
    left as it is (no coding asked for) never leaves the loop."""
    if (
        response.streaming
        or len(response.content) < OFF_LOOP_SIZE
        or choose(request.META.get("HTTP_ACCEPT_ENCODING", "")) is None
    ):
        return compress(request, response)
    # A large body takes milliseconds to encode: not on the event loop (the
    # compressors release the GIL, so the other core can work meanwhile).
    return await sync_to_async(compress, thread_sensitive=False)(request, response)
