"""The columnar parser accepts and refuses exactly the rows the row parser does, with the same
values, messages and line numbers, on random and hostile files (hypothesis)."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.ingest.columnar import ColumnarParser
from apps.ingest.formats import HeaderError
from apps.ingest.parsing import Parser, Row, TooLarge, open_binary, open_text
from tests.ingest.ingest_support import LONG_HEADER, WIDE_HEADER, labels_raw, long_row, wide_row

NOW = 1_752_871_354.0
PATHS: list[str] = []  # which path each columnar parse took (rows: a file it hands over whole)


def samples(parser: Any) -> list[tuple]:
    out: list[tuple] = []
    for item in parser:
        if isinstance(item, Row):
            out.extend((item.uuid, item.ts, name, value) for name, value in item.values)
            continue
        for gpu, ts, metric, value in zip(
            item.gpu.tolist(),
            item.ts.tolist(),
            item.metric.tolist(),
            item.value.tolist(),
            strict=True,
        ):
            out.append((item.uuids[gpu], ts, item.names[metric], value))
    return out


def outcome(make: Any) -> tuple:
    """Everything a parse decides: samples, counts, errors, or the error that ended it."""
    try:
        parser = make()
    except HeaderError as exc:
        return ("header", str(exc))
    try:
        got = samples(parser)
        ended = ""
    except TooLarge as exc:
        got, ended = [], str(exc)
    counts = (parser.rows_read, parser.accepted, parser.rejected, parser.blank)
    return (got if not ended else None, counts, list(parser.errors), ended)


LIMITS = {"max_line": 3000, "max_future": 300.0, "max_lines": 400, "max_metrics_per_gpu": 5}


def both(data: bytes, block: int, **limits: Any) -> tuple[tuple, tuple]:
    limits = {**LIMITS, **limits}

    def rows() -> Parser:
        return Parser(open_text(io.BytesIO(data)), clock=lambda: NOW, **limits)  # type: ignore[arg-type]

    def columns() -> ColumnarParser:
        made = ColumnarParser(
            open_binary(io.BytesIO(data)),  # type: ignore[arg-type]
            block_bytes=block,
            clock=lambda: NOW,
            **limits,
        )
        PATHS.append("rows" if made._rows_mode else "columns")
        return made

    return outcome(rows), outcome(columns)


def check(data: bytes, block: int) -> None:
    reference, columnar = both(data, block)
    assert columnar == reference


def quoted(cells: list[str]) -> str:
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells)


def plain(cells: list[str]) -> str:
    return ",".join(cells)


hostile_cells = st.sampled_from(
    [
        "",
        " ",
        "abc",
        "1_000",
        "\uff11",
        "+5",
        ".5",
        "5.",
        "1e-400",
        "1e400",
        "NaN",
        "-0",
        "2147483632",
        "9223372036854775792",
        "140737488355328",
        "12.5",
        "  7 ",
        "3e2",
        "GPU-1",
        "h1",
        "a/b",
        "..",
        "2025-07-18T20:42:34Z",
        "2025-07-18T21:00:00Z",
        "2100-01-01T00:00:00Z",
        "1752871354",
        "yesterday",
        "DCGM_FI_DEV_GPU_UTIL",
        'x"y',
        '"',
        "\n",
        "\r\n",
        "\r",
        "a,b",
        "\x00",
        "z" * 3100,
        'GPU_I_ID="2"',
    ]
)


@st.composite
def long_files(draw: Any) -> bytes:
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 9))
        uuid = draw(st.sampled_from(["GPU-a", "GPU-b", " GPU-c", "GPU-d"]))
        metric = draw(st.sampled_from([f"M{i}" for i in range(8)] + ["DCGM_FI_DEV_GPU_UTIL"]))
        value = draw(st.one_of(hostile_cells, st.floats(allow_nan=True).map(repr)))
        ts = draw(
            st.sampled_from(
                [
                    "2025-07-18T20:42:34Z",
                    "2025-07-18T20:42:44Z",
                    "1752871300",
                    "2100-01-01T00:00:00Z",
                ]
            )
        )
        gi = draw(st.sampled_from(["", "", "", "1", "2"]))
        labels = labels_raw(uuid=uuid.strip(), **({"GPU_I_ID": gi} if gi else {}))
        row = long_row(timestamp=ts, uuid=uuid, metric_name=metric, value=value, labels_raw=labels)
        if kind == 0:
            row[draw(st.integers(0, len(row) - 1))] = draw(hostile_cells)
        if kind == 1:
            row = row[: draw(st.integers(0, len(row)))]
        if kind == 2:
            rows.append(draw(st.sampled_from(["", "   ", '""', "\r", "#comment"])))
            continue
        if kind == 3:
            rows.append(plain(row))
            continue
        rows.append(quoted(row))
    end = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    body = end.join([",".join(LONG_HEADER), *rows]) + draw(st.sampled_from([end, ""]))
    return body.encode("utf-8", "surrogatepass")


@st.composite
def wide_files(draw: Any) -> bytes:
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        cells = {c: draw(hostile_cells) for c in draw(st.sets(st.sampled_from(WIDE_HEADER[6:])))}
        row = wide_row(uuid=draw(st.sampled_from(["GPU-a", "GPU-b"])), **cells)
        if draw(st.integers(0, 5)) == 0:
            row[draw(st.integers(0, len(row) - 1))] = draw(hostile_cells)
        rows.append(plain(row) if draw(st.booleans()) else quoted(row))
    body = "\n".join([",".join(WIDE_HEADER), *rows]) + "\n"
    return body.encode("utf-8", "surrogatepass")


BLOCKS = st.sampled_from([64, 300, 2000, 1 << 20])
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(long_files(), BLOCKS)
def test_long_files_give_the_same_rows_and_errors(data, block):
    check(data, block)


@FAST
@given(wide_files(), BLOCKS)
def test_wide_files_give_the_same_rows_and_errors(data, block):
    check(data, block)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000), BLOCKS)
def test_random_bytes_after_a_header_give_the_same_outcome(tail, block):
    check((",".join(LONG_HEADER) + "\n").encode() + tail, block)


def test_the_real_layout_in_many_blocks_gives_the_same_rows():
    rows = [quoted(long_row(value=str(i % 97), uuid=f"GPU-{i % 13}")) for i in range(3000)]
    data = ("\n".join([",".join(LONG_HEADER), *rows]) + "\n").encode()
    reference, columnar = both(data, 1 << 14, max_lines=10_000, max_metrics_per_gpu=1000)
    assert reference[1] == (3000, 3000, 0, 0)
    assert columnar == reference


def test_most_generated_files_take_the_columnar_path():
    """The property tests above compare the columnar path, not the row parser with itself."""
    assert PATHS.count("columns") > len(PATHS) / 2, (PATHS.count("columns"), len(PATHS))


def test_a_regular_file_is_read_in_column_batches():
    rows = [quoted(long_row(value=str(i))) for i in range(50)]
    data = ("\n".join([",".join(LONG_HEADER), *rows]) + "\n").encode()
    parser = ColumnarParser(open_binary(io.BytesIO(data)), block_bytes=1000)  # type: ignore[arg-type]
    items = list(parser)
    assert items and not any(isinstance(item, Row) for item in items)
    assert sum(len(item) for item in items) == 50


def test_a_truncated_gzip_upload_gives_the_same_rows_and_the_same_error():
    import gzip

    rows = [quoted(long_row(value=str(i))) for i in range(3000)]
    data = gzip.compress(("\n".join([",".join(LONG_HEADER), *rows]) + "\n").encode())
    for cut in (len(data) // 3, len(data) // 2, len(data) - 5):
        for block in (1 << 14, 1 << 20):
            reference, columnar = both(
                data[:cut], block, max_lines=10_000, max_metrics_per_gpu=1000
            )
            assert "truncated" in reference[2][-1].message
            assert columnar == reference


def test_a_metric_first_named_by_a_doubtful_row_is_kept():
    """A row the row parser judges (here a name with spaces around it) may bring a metric
    the column batch has not seen yet; its name must be in the batch's name table."""
    rows = [quoted(long_row(metric_name="DCGM_FI_DEV_GPU_UTIL", value="1"))]
    rows.append(quoted(long_row(metric_name=" DCGM_FI_DEV_MEM_COPY_UTIL", value="2")))
    data = ("\n".join([",".join(LONG_HEADER), *rows]) + "\n").encode()
    reference, columnar = both(data, 1 << 20)
    assert reference[1][1] == 2  # both rows accepted by the reference
    assert columnar == reference
