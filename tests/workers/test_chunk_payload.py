"""Chunk payload: encode/decode and a msgpack trip (as Celery sends it) keep everything exact."""

from __future__ import annotations

import math
import struct
from array import array

import msgpack
import numpy as np
import pytest
import zstandard

from apps.ingest.chunking import Chunk, Chunker, GpuBuffer
from tests.ingest.ingest_support import REAL_CSV, parse_all
from workers import payload
from workers.payload import PayloadError, decode, encode

ROOT = "/telemetry-test"
VALUES = [
    0.0,
    -0.0,
    0.1,
    1 / 3,
    -273.15,
    1e-300,
    5e-324,  # smallest subnormal
    2.2250738585072014e-308,
    1.7976931348623157e308,
    123456789.123456789,
    float(2**53 + 1),
]


def celery_msgpack(obj: object) -> object:
    """What Celery's msgpack serializer does to a task argument on its way to the worker."""
    return msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False)


def chunk_with(values: list[float]) -> Chunk:
    facts = {
        "uuid": "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
        "cluster": "dgx",
        "host": "mtv5-dgx1-hgpu-031",
        "gpu_index": 0,
        "device": "nvidia0",
        "model": "NVIDIA H100 80GB HBM3",
        "driver": "535.129.03",
        "labels": {"instance": "mtv5-dgx1-hgpu-031:9400", "pci_bus_id": "00000000:18:00.0"},
    }
    other = {**facts, "uuid": "GPU-2", "gpu_index": None, "labels": {}}
    n = len(values)
    first = GpuBuffer(
        facts,
        array("q", [1_752_871_354_000 + i for i in range(n)]),
        array("l", [i % 2 for i in range(n)]),
        array("d", values),
    )
    second = GpuBuffer(other, array("q", [0, 9_999_999_999_999]), array("l", [1, 0]))
    second.value.extend([7.0, -7.0])
    return Chunk(4, ["DCGM_FI_DEV_GPU_UTIL", "MY_METRIC_ü"], [first, second])


def assert_same(decoded: payload.DecodedChunk, chunk: Chunk) -> None:
    assert (decoded.root, decoded.job, decoded.seq) == (ROOT, "job-1", chunk.seq)
    assert len(decoded.batches) == len(chunk.gpus)
    for batch, gpu in zip(decoded.batches, chunk.gpus, strict=True):
        assert batch.facts == gpu.facts
        assert batch.uuid == gpu.facts["uuid"]
        samples = batch.samples
        assert samples.names == tuple(chunk.names)
        assert samples.ts.dtype == np.int64 and samples.ts.tolist() == list(gpu.ts)
        assert samples.metric.dtype == np.int32 and samples.metric.tolist() == list(gpu.metric)
        assert samples.value.dtype == np.float64
        # bit for bit: -0.0 stays -0.0
        assert [struct.pack("<d", v) for v in samples.value.tolist()] == [
            struct.pack("<d", v) for v in gpu.value
        ]


def test_encode_decode_round_trip_keeps_facts_times_names_and_exact_values():
    chunk = chunk_with(VALUES)
    assert_same(decode(encode(chunk, ROOT, "job-1")), chunk)


def test_msgpack_round_trip_keeps_the_payload_intact():
    chunk = chunk_with(VALUES)
    sent = encode(chunk, ROOT, "job-1")
    received = celery_msgpack(sent)
    assert received == sent
    assert_same(decode(received), chunk)


def test_payload_columns_are_one_zstd_frame_of_little_endian_columns():
    sent = encode(chunk_with([1.5]), ROOT, "job-1")
    assert [g["n"] for g in sent["gpus"]] == [1, 2]
    packed = zstandard.ZstdDecompressor().decompress(sent["z"])
    assert len(packed) == 3 * 20  # three samples: int64 + int32 + float64 each
    assert struct.unpack("<q", packed[:8]) == (1_752_871_354_000,)
    assert struct.unpack("<i", packed[8:12]) == (0,)
    assert struct.unpack("<d", packed[12:20]) == (1.5,)
    assert struct.unpack("<qq", packed[20:36]) == (0, 9_999_999_999_999)  # the second GPU


def test_version_1_payloads_still_decode():
    """Chunks queued before an upgrade, or written for older workers (CHUNK_PAYLOAD_VERSION=1):
    each GPU's raw columns in its own entry."""
    chunk = chunk_with(VALUES)
    sent = celery_msgpack(encode(chunk, ROOT, "job-1", version=1))
    assert sent["v"] == 1 and "z" not in sent
    gpu = sent["gpus"][0]
    assert struct.unpack("<q", gpu["t"][:8]) == (1_752_871_354_000,)
    assert struct.unpack("<d", gpu["x"][8:16]) == (VALUES[1],)
    assert_same(decode(sent), chunk)


def test_no_payload_version_but_1_and_2_is_written():
    with pytest.raises(ValueError, match="version 3"):
        encode(chunk_with([1.0]), ROOT, "job-1", version=3)


def zstd_zeros(size: int) -> bytes:
    """A whole zstd frame of `size` zero bytes (declared in its header), built a MiB at a time."""
    stream = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    piece = bytes(min(size, 1 << 20))
    return b"".join(stream.compress(piece) for _ in range(size // len(piece))) + stream.flush()


def test_a_frame_declaring_another_size_than_its_counts_is_refused_uninflated():
    """A frame is never inflated past what the GPUs' counts say: 1 GiB of zeros (32 KB of
    zstd) and a frame 20 bytes short are both refused by their declared size."""
    sent = encode(chunk_with([1.0]), ROOT, "job-1")  # three samples: 60 bytes expected
    for size in (1 << 30, 40):
        sent["z"] = zstd_zeros(size)
        with pytest.raises(PayloadError, match=f"holds {size} bytes, not 60"):
            decode(sent)


def test_negative_zero_and_extremes_survive_bit_for_bit():
    sent = celery_msgpack(encode(chunk_with([-0.0, 5e-324]), ROOT, "job-1"))
    value = decode(sent).batches[0].samples.value
    assert math.copysign(1.0, value[0]) == -1.0
    assert value[1] == 5e-324


def test_empty_chunk_round_trips():
    chunk = Chunk(0, [], [])
    decoded = decode(celery_msgpack(encode(chunk, ROOT, "job-1")))
    assert decoded.batches == [] and decoded.seq == 0


@pytest.mark.parametrize("version", [None, 0, 3, "2", True])
def test_wrong_version_raises_payload_error(version):
    sent = encode(chunk_with([1.0]), ROOT, "job-1")
    if version is None:
        del sent["v"]
    else:
        sent["v"] = version
    with pytest.raises(PayloadError, match="version"):
        decode(sent)


def test_payload_that_is_not_a_dict_raises_payload_error():
    with pytest.raises(PayloadError):
        decode(["not", "a", "chunk"])  # type: ignore[arg-type]


def with_columns(payload: dict, change) -> None:
    """`change` the payload's columns (times, metric indexes, values of its first GPU)."""
    n = payload["gpus"][0]["n"]
    packed = bytearray(zstandard.ZstdDecompressor().decompress(payload["z"]))
    change(packed, n)
    payload["z"] = zstandard.ZstdCompressor(level=1).compress(bytes(packed))


def index_past_the_names(packed: bytearray, n: int) -> None:
    packed[8 * n : 12 * n] = struct.pack("<i", 9) * n


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("names"),
        lambda p: p.pop("z"),
        lambda p: p.update(z=p["z"][:-3]),  # a cut frame
        lambda p: p.update(z=b"not zstd"),
        lambda p: p.update(z="text"),
        lambda p: p["gpus"][0].update(n=3),  # more samples than the frame holds
        lambda p: p["gpus"][0].update(n=-1),
        lambda p: p["gpus"][0].update(n=1.5),
        lambda p: p["gpus"].pop(),  # fewer GPUs than the frame holds
        lambda p: with_columns(p, index_past_the_names),
        lambda p: with_columns(p, lambda packed, n: packed.extend(bytes(20))),  # one too many
        lambda p: p.update(seq="first"),
    ],
)
def test_malformed_payload_raises_payload_error(damage):
    sent = encode(chunk_with([1.0, 2.0]), ROOT, "job-1")
    damage(sent)
    with pytest.raises(PayloadError):
        decode(sent)


def test_real_file_chunks_round_trip_through_msgpack():
    if not REAL_CSV.exists():
        pytest.skip(f"the real DCGM export is not at {REAL_CSV}")
    parser, rows = parse_all(REAL_CSV.read_bytes())
    chunks: list[Chunk] = []
    chunker = Chunker(chunks.append, lambda r: parser.facts(r, "dgx"), 500, 1000)
    for r in rows:
        chunker.add(r)
    chunker.finish()
    expected = sorted((r.uuid, r.ts, n, v) for r in rows for n, v in r.values)
    got = []
    for chunk in chunks:
        decoded = decode(celery_msgpack(encode(chunk, ROOT, "job-1")))
        for batch in decoded.batches:
            assert batch.facts["driver"] == "535.129.03"
            s = batch.samples
            got += [
                (batch.uuid, int(t), s.names[m], float(v))
                for t, m, v in zip(s.ts, s.metric, s.value, strict=True)
            ]
    assert sorted(got) == expected
