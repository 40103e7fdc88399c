"""Responses are compressed as the client's Accept-Encoding asks (zstd, br, gzip), through
Django's stack and through the real ASGI gateway, streamed exports included."""

from __future__ import annotations

import gzip
import urllib.request
import zlib

import brotli
import pytest
import zstandard

from telemetry_site.compression import ENCODERS, choose
from tests.api.api_support import generated, upload
from tests.helpers import wait_job_done

DECODE = {
    "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
    "br": brotli.decompress,
    "gzip": gzip.decompress,
}


# Incremental decoders, as a browser or Grafana reads a streamed answer piece by piece
STREAM_DECODERS = {
    "zstd": lambda: zstandard.ZstdDecompressor().decompressobj().decompress,
    "br": lambda: brotli.Decompressor().process,
    "gzip": lambda: zlib.decompressobj(31).decompress,  # the standard library's, not ours
}


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
def test_each_flushed_piece_decodes_at_once(coding):
    """A streamed export stays a stream: what the encoder gave after each piece decodes,
    with a standard decoder, to every byte given so far (nothing held back until the end).
    It guards the flush of every encoder (zlib's gzip passed it as ISA-L's does)."""
    encoder, decode = ENCODERS[coding](), STREAM_DECODERS[coding]()
    pieces = [b"timestamp,uuid,metric,value\n"] + [
        f"{1752800000 + i},GPU-{i % 7},DCGM_FI_DEV_GPU_UTIL,{i % 101}\n".encode() * 40
        for i in range(30)
    ]
    got = b""
    for n, piece in enumerate(pieces, 1):
        got += decode(encoder.compress(piece) + encoder.flush())
        assert got == b"".join(pieces[:n])
    assert got + decode(encoder.finish()) == b"".join(pieces)


@pytest.fixture
def uuid(pipeline, api) -> str:
    response = upload(api, generated(hosts=1, gpus_per_host=1, samples=200, seed=5))
    wait_job_done(api, response.json()["id"])
    return api.get("/api/v1/gpus").json()["results"][0]["uuid"]


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip;q=1.0, zstd;q=0.5", "gzip"),
        ("*", "zstd"),
        ("zstd;q=0, br;q=0, *;q=0.1", "gzip"),
        ("identity", None),
        ("", None),
        ("compress", None),
    ],
)
def test_the_client_chooses_the_coding(accept, coding):
    assert choose(accept) == coding


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
def test_json_and_csv_answers_decode_to_the_identity_bytes(uuid, api, coding):
    url = f"/api/v1/gpus/{uuid}/telemetry"
    plain = api.get(url, {"limit": "all"})
    packed = api.get(url, {"limit": "all"}, HTTP_ACCEPT_ENCODING=coding)
    assert "Content-Encoding" not in plain and packed["Content-Encoding"] == coding
    assert "Accept-Encoding" in packed["Vary"]
    assert len(packed.content) < len(plain.content) / 4
    assert DECODE[coding](packed.content) == plain.content
    csv_plain = b"".join(api.get(url, {"format": "csv"}).streaming_content)
    csv_packed = api.get(url, {"format": "csv"}, HTTP_ACCEPT_ENCODING=coding)
    assert csv_packed["Content-Encoding"] == coding and not csv_packed.has_header("Content-Length")
    assert DECODE[coding](b"".join(csv_packed.streaming_content)) == csv_plain


def test_small_and_not_modified_answers_are_left_alone(uuid, api):
    small = api.get("/health", HTTP_ACCEPT_ENCODING="gzip")
    assert "Content-Encoding" not in small and small.json() == {"status": "ok"}
    first = api.get("/api/v1/gpus", HTTP_ACCEPT_ENCODING="gzip")
    again = api.get("/api/v1/gpus", HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and "Content-Encoding" not in again


def test_the_gateway_compresses_on_its_async_stack(gateway):
    base = gateway
    with urllib.request.urlopen(base + "/api/schema/", timeout=30) as plain:
        identity = plain.read()
    request = urllib.request.Request(base + "/api/schema/", headers={"Accept-Encoding": "br"})
    with urllib.request.urlopen(request, timeout=30) as packed:
        assert packed.headers["Content-Encoding"] == "br"
        assert brotli.decompress(packed.read()) == identity
