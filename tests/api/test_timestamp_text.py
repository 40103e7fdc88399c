"""Response timestamps are written for many times at once in numpy (apps/read/columns.py):
the text is format_timestamp's, byte for byte, at every date the store's keys can hold."""

from __future__ import annotations

import numpy as np
import pytest

from apps.read import columns as col
from store.keys import MAX_TS
from timeparse.timestamps import format_timestamp

EDGES = [0, 1, 999, 1000, 86_399_999, 86_400_000, 951_782_400_000, 951_868_800_000]


@pytest.mark.parametrize(
    "ms",
    [
        np.array([*EDGES, 4_107_542_400_000, MAX_TS - 999, MAX_TS]),  # 2100-03-01, the last
        np.random.default_rng(1).integers(0, MAX_TS, 5000),  # with milliseconds, mostly
        np.random.default_rng(2).integers(0, MAX_TS // 1000, 5000) * 1000,  # whole seconds
        np.arange(0, 3 * 366) * 86_400_000 + 1_199_145_600_000 - 1,  # every day of 2008-2010
    ],
    ids=["edges", "with-ms", "whole-seconds", "days"],
)
def test_timestamp_text_is_format_timestamps(ms):
    want = [format_timestamp(int(t)) for t in ms]
    assert col.timestamp_texts(ms) == want
    assert col.timestamp_bytes(ms, b'{"t":"', b'",') == [
        b'{"t":"' + w.encode() + b'",' for w in want
    ]


def test_rows_json_is_the_rows_as_json():
    import orjson

    from store.codec import Samples

    ts = np.array([1_752_800_000_000, 1_752_800_000_000, 1_752_800_010_500], dtype=np.int64)
    s = Samples(ts, np.array([0, 1, 0], np.int32), np.array([1.5, 2e-07, 3.0]), ("a", 'b"'))
    assert orjson.loads(col.rows_json(s)) == [
        {"timestamp": "2025-07-18T00:53:20Z", "metric_name": "a", "value": 1.5},
        {"timestamp": "2025-07-18T00:53:20Z", "metric_name": 'b"', "value": 2e-07},
        {"timestamp": "2025-07-18T00:53:30.500Z", "metric_name": "a", "value": 3.0},
    ]
    assert col.rows_json(col.take(s, 0)) == b"[]"
