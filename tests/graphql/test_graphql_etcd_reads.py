"""No N+1: every GPU with its latest values costs the same few etcd reads at any fleet size.

store.kv's read functions are wrapped with a counting spy (the reads still happen).
"""

from __future__ import annotations

from tests.api.api_support import generated, upload
from tests.graphql.gql_support import data
from tests.helpers import wait_job_done

EVERY_GPU_WITH_LATEST = """{
  gpus(first: 1000) {
    totalCount
    edges { node { uuid host cluster lastSeen latest { metricName timestamp value } } }
  }
}"""
# The records and the latest values, two ranges in one transaction, whatever the GPU count.
GPUS_READS = 1


def test_all_247_gpus_with_latest_take_one_etcd_read(real_fleet, api, kv_reads):
    answer = data(api, EVERY_GPU_WITH_LATEST)["gpus"]
    assert answer["totalCount"] == len(answer["edges"]) == 247
    assert all(len(e["node"]["latest"]) == 10 for e in answer["edges"])
    assert kv_reads == ["get_ranges_since"]
    assert len(kv_reads) == GPUS_READS <= 3


def test_a_small_fleet_takes_the_same_reads(pipeline, api, kv_reads):
    response = upload(api, generated(hosts=2, gpus_per_host=3, samples=2, seed=9))
    wait_job_done(api, response.json()["id"])
    kv_reads.clear()
    answer = data(api, EVERY_GPU_WITH_LATEST)["gpus"]
    assert answer["totalCount"] == 6
    assert len(kv_reads) == GPUS_READS


def test_one_gpu_and_the_lists_take_a_fixed_number_of_reads(real_fleet, api, kv_reads):
    uuid = data(api, "{ gpus(first: 1) { edges { node { uuid } } } }")["gpus"]["edges"][0]
    kv_reads.clear()
    data(api, f'{{ gpu(uuid: "{uuid["node"]["uuid"]}") {{ uuid latest {{ value }} }} }}')
    assert len(kv_reads) == 3  # locator, record, latest
    kv_reads.clear()
    data(api, "{ clusters { name gpuCount } hosts { hostname } }")
    assert len(kv_reads) == 2  # one records read each


def test_mig_instances_of_every_gpu_take_one_more_read(real_fleet, api, kv_reads):
    query = "{ gpus(first: 1000) { edges { node { uuid instances parent } } } }"
    answer = data(api, query)["gpus"]["edges"]
    assert len(answer) == 247 and all(e["node"]["instances"] == [] for e in answer)
    # the fleet's reads, then every GPU's instances in one keys-only range read
    assert kv_reads.count("keys_in_range") == 1 and len(kv_reads) == GPUS_READS + 1
