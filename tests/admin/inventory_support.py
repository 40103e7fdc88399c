"""Put GPUs in etcd the way a worker does (store.write.write_chunk), for admin and
dashboard tests that need data but not the whole upload path."""

from __future__ import annotations

from store.codec import samples_from_rows
from store.keys import Keys
from store.write import GpuBatch, write_chunk

WINDOW = 3_600_000
T0 = 1_752_871_354_000  # 2025-07-18T20:42:34Z, the real export's first timestamp
UTIL = "DCGM_FI_DEV_GPU_UTIL"
TEMP = "DCGM_FI_DEV_GPU_TEMP"


def facts(uuid: str, host: str = "node-01", cluster: str = "prod", **more: object) -> dict:
    return {
        "uuid": uuid,
        "cluster": cluster,
        "host": host,
        "gpu_index": more.get("gpu_index", 0),
        "device": "nvidia0",
        "model": more.get("model", "NVIDIA H100 80GB HBM3"),
        "driver": "535.129.03",
        "labels": {},
    }


def store_gpu(
    keys: Keys,
    uuid: str,
    util: float = 50.0,
    temp: float = 45.0,
    seq: int = 0,
    **fact_kw: object,
) -> list[dict]:
    """One GPU with a utilization and a temperature sample at T0 + seq s; returns the
    GPU records write_chunk reports (what a worker mirrors)."""
    ts = T0 + seq * 1000
    rows = [(ts, UTIL, float(util)), (ts, TEMP, float(temp))]
    batch = GpuBatch(facts(uuid, **fact_kw), samples_from_rows(rows))
    return list(write_chunk(keys, f"job-{uuid}", seq, [batch], WINDOW).records)
