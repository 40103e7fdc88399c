"""Re-uploads store each sample once; `latest` only moves forward; a later value wins."""

from __future__ import annotations

import csv
import io

import pytest

from store import default_keys
from store.compaction import compact
from store.tiers import tiers
from tests.api.api_support import all_gpus, generated, keys_under, stored_samples, upload
from tests.helpers import wait_job_done

METRIC = "DCGM_FI_DEV_POWER_USAGE"


def ingest(api, data: bytes, name: str = "file.csv") -> dict:
    response = upload(api, data, name)
    assert response.status_code == 202, response.content
    return wait_job_done(api, response.json()["id"])


def dataset(start: str = "2025-07-18T20:00:00Z", samples: int = 5) -> bytes:
    return generated(hosts=1, gpus_per_host=2, samples=samples, seed=3, start=start)


def with_value(data: bytes, uuid: str, timestamp: str, metric: str, value: str) -> bytes:
    """`data` (long format) with one sample's value changed."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(rows[0])
    hits = 0
    for row in rows[1:]:
        if (row[0], row[1], row[4]) == (timestamp, metric, uuid):
            row[10] = value
            hits += 1
        writer.writerow(row)
    assert hits == 1
    return out.getvalue().encode()


def snapshot(api) -> dict[str, tuple[dict, dict]]:
    return {g["uuid"]: (g, stored_samples(api, g["uuid"])) for g in all_gpus(api)}


@pytest.fixture
def first(pipeline, api) -> dict[str, tuple[dict, dict]]:
    ingest(api, dataset(), "first.csv")
    return snapshot(api)


def test_it_stores_a_twice_uploaded_file_once(first, api):
    blocks = keys_under("blocks")
    job = ingest(api, dataset(), "again.csv")
    assert job["rows_accepted"] == 2 * 5 * 10
    assert snapshot(api) == first
    # The second upload's blocks carry its (newer) upload order, so they are new keys;
    # compaction drops the first upload's blocks, which the second overrides entirely.
    assert len(keys_under("blocks")) == 2 * len(blocks)
    report = compact(default_keys(), tiers(), retention=False)
    assert report.blocks_removed == len(blocks)
    assert len(keys_under("blocks")) == len(blocks)
    assert snapshot(api) == first
    for gpu, samples in first.values():
        assert len(samples) == 5 * 10
        assert gpu["last_seen"] == "2025-07-18T20:00:40Z"


def test_a_newer_file_moves_latest(first, api):
    ingest(api, dataset(start="2025-07-18T20:05:00Z", samples=2), "newer.csv")
    now = snapshot(api)
    for uuid, (gpu, samples) in now.items():
        old_gpu, old_samples = first[uuid]
        assert gpu["last_seen"] == "2025-07-18T20:05:10Z"
        assert {v["timestamp"] for v in gpu["latest"].values()} == {"2025-07-18T20:05:10Z"}
        assert gpu["latest"] != old_gpu["latest"]
        assert gpu["first_seen"] == old_gpu["first_seen"]
        assert len(samples) == len(old_samples) + 2 * 10
        assert old_samples.items() <= samples.items()


def test_an_older_file_does_not_move_latest(first, api):
    ingest(api, dataset(start="2025-07-18T19:00:00Z", samples=2), "older.csv")
    for uuid, (gpu, samples) in snapshot(api).items():
        old_gpu, old_samples = first[uuid]
        assert gpu["latest"] == old_gpu["latest"]
        assert gpu["last_seen"] == old_gpu["last_seen"]
        assert gpu["first_seen"] == "2025-07-18T19:00:00Z"
        assert len(samples) == len(old_samples) + 2 * 10


def test_a_changed_value_in_a_later_upload_wins(first, api):
    uuid = sorted(first)[0]
    middle, last = "2025-07-18T20:00:20Z", "2025-07-18T20:00:40Z"
    changed = with_value(dataset(), uuid, middle, METRIC, "999.5")
    changed = with_value(changed, uuid, last, METRIC, "111.25")
    ingest(api, changed, "changed.csv")

    gpu, samples = snapshot(api)[uuid]
    old_samples = first[uuid][1]
    ts_middle, ts_last = 1752868820000, 1752868840000
    assert samples[(ts_middle, METRIC)] == 999.5
    assert samples[(ts_last, METRIC)] == 111.25
    assert len(samples) == len(old_samples)
    changed_keys = {(ts_middle, METRIC), (ts_last, METRIC)}
    untouched = {k: v for k, v in samples.items() if k not in changed_keys}
    assert untouched.items() <= old_samples.items()
    assert gpu["latest"][METRIC] == {"timestamp": last, "value": 111.25}
    other = sorted(first)[1]
    assert snapshot(api)[other] == first[other]

    # The original file again: it is now the later upload, so its values win again.
    ingest(api, dataset(), "original-again.csv")
    assert snapshot(api)[uuid] == first[uuid]
