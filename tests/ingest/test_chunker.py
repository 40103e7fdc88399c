"""Chunker: accepted rows grouped per GPU into chunks of bounded size, within a memory bound."""

from __future__ import annotations

import io
import random
from collections import Counter, defaultdict

import pytest

from apps.ingest import chunking
from apps.ingest.chunking import Chunk, Chunker
from apps.ingest.columnar import ColumnarParser
from apps.ingest.parsing import Parser, Row, open_binary, open_text
from apps.ingest.workloads import csv_workload
from tests.ingest.ingest_support import REAL_CSV, labels_raw, long_csv, long_row, parse_all

T0 = 1_752_871_354_000


def row(uuid: str, ts: int, *values: tuple[str, float]) -> Row:
    return Row(uuid, "host-" + uuid[-1], ts, list(values), [])


class Recorder:
    """Collects chunks, and which call (add number or 'finish') emitted each."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.by_call: dict[object, list[Chunk]] = defaultdict(list)
        self.call: object = None

    def emit(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.by_call[self.call].append(chunk)


def run(rows: list[Row], chunk_rows: int, buffer_rows: int) -> tuple[Recorder, Chunker, list[dict]]:
    recorder = Recorder()
    facts_calls: list[dict] = []

    def facts(r: Row) -> dict:
        f = {"uuid": r.uuid, "host": r.host}
        facts_calls.append(f)
        return f

    chunker = Chunker(recorder.emit, facts, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    for i, r in enumerate(rows):
        recorder.call = i
        chunker.add(r)
    recorder.call = "finish"
    chunker.finish()
    return recorder, chunker, facts_calls


def samples_of(chunks: list[Chunk]) -> Counter:
    """Every (uuid, ts, metric name, value) in the chunks, with multiplicity."""
    out: Counter = Counter()
    for chunk in chunks:
        for gpu in chunk.gpus:
            for ts, m, v in zip(gpu.ts, gpu.metric, gpu.value, strict=True):
                out[(gpu.facts["uuid"], ts, chunk.names[m], v)] += 1
    return out


def samples_in(rows: list[Row]) -> Counter:
    return Counter((r.uuid, r.ts, name, value) for r in rows for name, value in r.values)


def random_rows(seed: int, n: int, gpus: int, width: int) -> list[Row]:
    rng = random.Random(seed)
    metrics = [f"M{i}" for i in range(12)]
    out = []
    for i in range(n):
        values = [(name, rng.random()) for name in rng.sample(metrics, rng.randint(1, width))]
        out.append(row(f"GPU-{rng.randrange(gpus)}", T0 + i, *values))
    return out


@pytest.mark.parametrize(
    ("seed", "chunk_rows", "buffer_rows", "width"),
    [(1, 10, 10, 1), (2, 10, 35, 8), (3, 7, 1000, 3), (4, 100, 100, 12), (5, 1, 1, 1)],
)
def test_every_sample_lands_in_exactly_one_chunk(seed, chunk_rows, buffer_rows, width):
    rows = random_rows(seed, 500, gpus=9, width=width)
    recorder, chunker, _ = run(rows, chunk_rows, buffer_rows)
    assert samples_of(recorder.chunks) == samples_in(rows)
    assert chunker.samples == sum(len(r.values) for r in rows)
    assert chunker.chunks == len(recorder.chunks)


@pytest.mark.parametrize(("chunk_rows", "buffer_rows"), [(10, 10), (10, 55), (64, 10_000)])
def test_no_chunk_is_larger_than_chunk_rows(chunk_rows, buffer_rows):
    rows = random_rows(11, 800, gpus=5, width=6)
    recorder, _, _ = run(rows, chunk_rows, buffer_rows)
    assert all(0 < chunk.samples <= chunk_rows for chunk in recorder.chunks)


def test_gpu_with_more_samples_than_chunk_rows_is_split_in_order():
    rows = [row("GPU-1", T0 + i, ("M", float(i))) for i in range(25)]
    recorder, _, _ = run(rows, chunk_rows=10, buffer_rows=1000)
    assert [c.samples for c in recorder.chunks] == [10, 10, 5]
    values = [v for c in recorder.chunks for g in c.gpus for v in g.value]
    assert values == [float(i) for i in range(25)]


def test_rows_of_one_gpu_stay_in_one_chunk_when_they_fit():
    rng = random.Random(5)
    rows = [row(f"GPU-{g}", T0 + t, ("M", 1.0)) for t in range(6) for g in range(9)]
    rng.shuffle(rows)
    recorder, _, _ = run(rows, chunk_rows=20, buffer_rows=1000)
    where = defaultdict(set)
    for chunk in recorder.chunks:
        for gpu in chunk.gpus:
            where[gpu.facts["uuid"]].add(chunk.seq)
            assert len(gpu) == 6
    assert all(len(seqs) == 1 for seqs in where.values())
    assert len(where) == 9
    assert [c.samples for c in recorder.chunks] == [18, 18, 18]


def test_samples_of_a_gpu_keep_their_arrival_order():
    rows = random_rows(8, 300, gpus=4, width=3)
    recorder, _, _ = run(rows, chunk_rows=50, buffer_rows=50)
    seen: dict[str, list[int]] = defaultdict(list)
    for chunk in recorder.chunks:
        for gpu in chunk.gpus:
            seen[gpu.facts["uuid"]].extend(gpu.ts)
    for uuid, stamps in seen.items():
        expected = [r.ts for r in rows if r.uuid == uuid for _ in r.values]
        assert stamps == expected


@pytest.mark.parametrize(("buffer_rows", "width"), [(20, 8), (30, 8), (10, 1), (16, 8), (50, 7)])
def test_chunker_never_holds_more_than_buffer_rows_samples(buffer_rows, width):
    # Wide rows carry several samples: a row that would go past the bound flushes first.
    rng = random.Random(buffer_rows)
    rows = [
        row(f"GPU-{rng.randrange(3)}", T0 + i, *[(f"M{k}", 1.0) for k in range(width)])
        for i in range(200)
    ]
    recorder, _, _ = run(rows, chunk_rows=10, buffer_rows=buffer_rows)
    flushed = [sum(c.samples for c in chunks) for chunks in recorder.by_call.values()]
    assert max(flushed) <= buffer_rows
    assert len(recorder.by_call) > 2  # it flushed early, not only at finish
    assert sum(flushed) == 200 * width


def test_a_single_row_wider_than_the_buffer_is_still_taken_whole():
    rows = [row("GPU-1", T0, *[(f"M{k}", float(k)) for k in range(30)])]
    recorder, _, _ = run(rows, chunk_rows=10, buffer_rows=10)
    assert samples_of(recorder.chunks) == samples_in(rows)
    assert [c.samples for c in recorder.chunks] == [10, 10, 10]


def test_seq_numbers_are_zero_to_n_minus_one_in_emit_order():
    recorder, chunker, _ = run(random_rows(3, 400, gpus=6, width=4), 15, 40)
    assert [c.seq for c in recorder.chunks] == list(range(chunker.chunks))
    assert chunker.chunks > 10


def test_chunk_names_resolve_metric_indexes_and_are_unique():
    recorder, _, _ = run(random_rows(4, 200, gpus=3, width=5), 25, 60)
    for chunk in recorder.chunks:
        assert len(set(chunk.names)) == len(chunk.names)
        assert all(0 <= m < len(chunk.names) for g in chunk.gpus for m in g.metric)


def test_facts_are_taken_once_per_gpu_per_flush():
    rows = [row(f"GPU-{g}", T0 + t, ("M", 1.0)) for t in range(10) for g in range(3)]
    recorder, _, facts_calls = run(rows, chunk_rows=100, buffer_rows=1000)
    assert len(facts_calls) == 3
    assert {f["uuid"] for c in recorder.chunks for f in [g.facts for g in c.gpus]} == {
        "GPU-0",
        "GPU-1",
        "GPU-2",
    }


def test_no_rows_means_no_chunks():
    recorder, chunker, _ = run([], 10, 10)
    assert recorder.chunks == [] and chunker.chunks == 0 and chunker.samples == 0


def test_real_file_chunks_hold_every_sample_once():
    if not REAL_CSV.exists():
        pytest.skip(f"the real DCGM export is not at {REAL_CSV}")
    _parser, rows = parse_all(REAL_CSV.read_bytes())
    recorder, chunker, _ = run(rows, chunk_rows=100, buffer_rows=500)
    assert samples_of(recorder.chunks) == samples_in(rows)
    assert chunker.samples == 2470
    assert all(c.samples <= 100 for c in recorder.chunks)


def chunked(items, layout, chunk_rows: int, buffer_rows: int) -> tuple[dict[str, tuple], set[str]]:
    """Per GPU, its samples in chunk order and its workload periods; and the kinds of item
    fed (Row, ColumnBatch)."""
    recorder = Recorder()
    chunker = Chunker(
        recorder.emit,
        lambda r: {"uuid": r.uuid},
        chunk_rows=chunk_rows,
        buffer_rows=buffer_rows,
        workload=csv_workload(layout),
    )
    kinds = set()
    for item in items:
        kinds.add(type(item).__name__)
        chunker.add(item)
    chunker.finish()
    out: dict[str, tuple] = defaultdict(lambda: ([], []))
    for chunk in recorder.chunks:
        for gpu in chunk.gpus:
            got, periods = out[gpu.facts["uuid"]]
            names = [chunk.names[m] for m in gpu.metric]
            got.extend(zip(gpu.ts, names, gpu.value, strict=True))
            periods.extend((p[0], p[1], tuple(sorted(p[2].items()))) for p in gpu.periods)
    return dict(out), kinds


def workload_file() -> bytes:
    """Six GPUs, two metrics, 60 steps; GPUs missing from some steps, pods changing."""
    rng = random.Random(17)
    rows = []
    for step in range(60):
        for g in rng.sample(range(6), rng.randint(1, 6)):
            uuid, pod = f"GPU-{g}", f"job-{(step // 15 + g) % 3}"
            for metric in rng.sample(["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"], 2):
                rows.append(
                    long_row(
                        timestamp=str(1_752_871_300 + step * 10),
                        uuid=uuid,
                        metric_name=metric,
                        value=str(rng.randint(0, 100)),
                        pod=pod,
                        labels_raw=labels_raw(uuid=uuid),
                    )
                )
    return long_csv(rows)


@pytest.mark.parametrize("settle", [1, 25, chunking.SETTLE_SAMPLES])
@pytest.mark.parametrize(("chunk_rows", "buffer_rows"), [(7, 40), (50, 1000), (1000, 1000)])
def test_column_batches_chunk_as_their_rows_do(chunk_rows, buffer_rows, settle, monkeypatch):
    """The columnar parser's batches (Chunker.add_batch) give each GPU the samples, order and
    workload periods its rows give (Chunker.add), across blocks, flushes, chunk cuts and
    batches put in GPU order together (`settle`: samples gathered before that)."""
    monkeypatch.setattr(chunking, "SETTLE_SAMPLES", settle)
    data = workload_file()
    columnar = ColumnarParser(open_binary(io.BytesIO(data)), block_bytes=2000)
    by_batches, kinds = chunked(columnar, columnar.layout, chunk_rows, buffer_rows)
    assert kinds == {"ColumnBatch"}  # no row handed over to the reference parser
    reference = Parser(open_text(io.BytesIO(data)))
    by_rows, kinds = chunked(reference, reference.layout, chunk_rows, buffer_rows)
    assert kinds == {"Row"}
    assert by_batches == by_rows
    assert len(by_batches) == 6 and all(len(p) > 1 for _, p in by_batches.values())


@pytest.mark.parametrize("settle", [1, 25, chunking.SETTLE_SAMPLES])
def test_rows_between_batches_keep_file_order(settle, monkeypatch):
    """Rows fed between batches (the columnar parser hands a file's rest to the row parser)
    come after the batches before them and before those after, for every GPU."""
    monkeypatch.setattr(chunking, "SETTLE_SAMPLES", settle)
    data = workload_file()
    reference = Parser(open_text(io.BytesIO(data)))
    rows = list(reference)
    batches = list(ColumnarParser(open_binary(io.BytesIO(data)), block_bytes=2000))
    mixed: list = []
    for i, batch in enumerate(batches):  # every other block as its rows (lines 2, 3, ...)
        mixed.extend([batch] if i % 2 else [rows[line - 2] for line in sorted(set(batch.line))])
    by_mixed, kinds = chunked(mixed, reference.layout, 50, 1000)
    assert kinds == {"ColumnBatch", "Row"} and len(batches) > 3
    assert by_mixed == chunked(rows, reference.layout, 50, 1000)[0]
