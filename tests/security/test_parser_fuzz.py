"""Random bytes and random CSV-like text into the parser: nothing escapes but HeaderError,
and accepted + rejected == rows read, always."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.ingest.formats import HeaderError
from apps.ingest.parsing import Parser, TooLarge, open_text

LONG_HEADER = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,"
    "container,pod,namespace,value,labels_raw"
)
WIDE_HEADER = "timestamp,gpu_id,hostname,uuid,device,modelname,gpu_utilization,temperature"

cells = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["2025-07-18T20:42:34Z", "1752871354", "GPU-1", "h1", "12.5", "NaN", '""', "\r", "\n", ","]
    ),
)
lines = st.lists(st.lists(cells, max_size=14).map(lambda cs: ",".join(cs)), max_size=40)


def run(data: bytes) -> Parser | None:
    try:
        parser = Parser(open_text(io.BytesIO(data), max_decompressed=1_000_000), max_line=2000)
    except HeaderError:
        return None
    try:
        for _ in parser:
            pass
    except TooLarge:
        pass
    assert parser.accepted + parser.rejected == parser.rows_read
    assert all(e.line >= 1 for e in parser.errors)
    return parser


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_break_the_parser(data):
    run(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([LONG_HEADER, WIDE_HEADER]), lines, st.sampled_from(["\n", "\r\n", "\r"]))
def test_random_csv_like_text_keeps_the_count_invariant(header, body, newline):
    data = newline.join([header, *body]).encode("utf-8", "surrogatepass")
    parser = run(data)
    assert parser is not None  # the header is valid: the parse must reach the rows


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=500))
def test_random_bytes_after_a_gzip_magic_are_refused_or_parsed(tail):
    run(b"\x1f\x8b" + tail)
