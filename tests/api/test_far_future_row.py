"""The issue's reproduction: the real export, then a far-future row, then `manage.py compact`.

The far-future row is refused at upload; a row of one GPU stamped today (valid) ages only that
GPU's own old data; every other GPU keeps every sample, through the API.
"""

from __future__ import annotations

import csv
import io
import json

from django.core.management import call_command

from store import default_keys, kv
from tests.api.api_support import all_gpus, stored_samples, upload
from tests.helpers import wait_job_done

TODAY = "2026-12-01T00:00:00Z"  # the clock of this run is later; the export is from July 2025


def one_row(template: dict, timestamp: str) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(template), lineterminator="\n")
    writer.writeheader()
    writer.writerow({**template, "timestamp": timestamp})
    return out.getvalue().encode()


def test_a_far_future_row_is_refused_and_one_gpus_new_row_ages_no_other_gpu(
    pipeline, api, real_csv
):
    response = upload(api, real_csv.read_bytes(), real_csv.name)
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    with open(real_csv, newline="") as fh:
        first = next(csv.DictReader(fh))
    target = first["uuid"]
    before = {g["uuid"]: stored_samples(api, g["uuid"]) for g in all_gpus(api)}

    refused = upload(api, one_row(first, "2100-01-01T00:00:00Z"), "future.csv")
    assert refused.status_code == 400  # its only row was rejected: nothing accepted
    assert (
        "ahead" in json.dumps(refused.json()).lower()
        or "future" in json.dumps(refused.json()).lower()
    )

    response = upload(api, one_row(first, TODAY), "today.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    out = io.StringIO()
    call_command("compact", stdout=out)
    report = json.loads(out.getvalue())
    assert report["failures"] == [] and report["deleted_by_retention"] >= 1

    after = {g["uuid"]: stored_samples(api, g["uuid"]) for g in all_gpus(api)}
    assert after.keys() == before.keys() and len(after) == len(before) > 100
    for uuid, samples in before.items():
        if uuid != target:
            assert after[uuid] == samples, uuid  # every sample of every other GPU kept
    # the GPU with today's row keeps only that row raw: its July data is past every tier
    assert len(after[target]) == 1
    assert kv.count_prefix(default_keys().blocks_prefix(target)) == 1
