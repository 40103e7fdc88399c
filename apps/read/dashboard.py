"""Dashboard pages: the fleet at `/`, one GPU at `/gpus/{uuid}/`.

Server-rendered from apps.read.queries (the code behind the REST API); the browser
then reads the REST API for chart data and the WebSocket feed for live updates
(apps/read/static/gpus/*.js). Every value reaches HTML through Django's autoescape
or, in the scripts, through textContent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_safe

from apps.accounts.auth import read_page
from apps.read import queries
from store import shards
from store.errors import InvalidSegment, NotFound, StoreError, answer_for
from timeparse.timestamps import parse_timestamp

UTIL = "DCGM_FI_DEV_GPU_UTIL"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
# Display names and units of the DCGM fields dcgm-exporter exports by default.
METRICS = {
    UTIL: ("GPU utilization", "%"),
    TEMP: ("GPU temperature", "°C"),
    "DCGM_FI_DEV_MEMORY_TEMP": ("Memory temperature", "°C"),
    "DCGM_FI_DEV_POWER_USAGE": ("Power", "W"),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("Memory copy utilization", "%"),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer used", "MiB"),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer free", "MiB"),
    "DCGM_FI_DEV_SM_CLOCK": ("SM clock", "MHz"),
    "DCGM_FI_DEV_MEM_CLOCK": ("Memory clock", "MHz"),
    "DCGM_FI_DEV_ENC_UTIL": ("Encoder utilization", "%"),
    "DCGM_FI_DEV_DEC_UTIL": ("Decoder utilization", "%"),
}
# The chart page's preselected metrics, when the GPU has them.
DEFAULT_METRICS = (UTIL, TEMP, "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED")
WINDOWS = (("5m", "5 minutes"), ("15m", "15 minutes"), ("1h", "1 hour"), ("6h", "6 hours"))
WINDOWS += (("24h", "24 hours"), ("7d", "7 days"), ("all", "all data"))
WINDOW_SECONDS = {"5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400}


def bucket(metric: str, value: float | None) -> str:
    """Colour class of a tile: u0..u9 for utilization (10 % steps), t0..t9 for temperature
    (8 °C steps from 20 °C), or u-none/t-none without a value.

    >>> bucket(UTIL, 86.0), bucket(TEMP, 19.0), bucket(TEMP, 120.0), bucket(UTIL, None)
    ('u8', 't0', 't9', 'u-none')
    """
    prefix = "u" if metric == UTIL else "t"
    if value is None:
        return f"{prefix}-none"
    step = value / 10 if metric == UTIL else (value - 20) / 8
    return f"{prefix}{min(9, max(0, int(step)))}"


def _value(gpu: dict[str, Any], metric: str) -> float | None:
    entry = gpu["latest"].get(metric)
    return None if entry is None else entry["value"]


def _tile(gpu: dict[str, Any]) -> dict[str, Any]:
    util, temp = _value(gpu, UTIL), _value(gpu, TEMP)
    return {
        **gpu,
        "util": util,
        "temp": temp,
        "classes": f"{bucket(UTIL, util)} {bucket(TEMP, temp)}",
        "url": reverse("dashboard-gpu", args=[gpu["uuid"]]),
    }


def _by_index(tile: dict[str, Any]) -> tuple[bool, int, str]:
    index = tile.get("gpu_index")
    return (index is None, index if isinstance(index, int) else 0, tile["uuid"])


def default_window(gpu: dict[str, Any]) -> str:
    """The shortest window that holds everything the GPU has recorded (at most 24 hours).

    >>> default_window({"first_seen": "2025-07-18T20:42:34Z", "last_seen": "2025-07-18T20:52:34Z"})
    '15m'
    """
    if not gpu.get("last_seen"):
        return "1h"
    span = (parse_timestamp(gpu["last_seen"]) - parse_timestamp(gpu["first_seen"])) / 1000
    for value, seconds in WINDOW_SECONDS.items():
        if span <= seconds:
            return value
    return "24h"


def fleet_summary(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Clusters, each with its hosts, each with its GPU tiles; plus fleet totals."""
    clusters: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for gpu in gpus:
        clusters[gpu["cluster"]][gpu["host"]].append(_tile(gpu))
    utils = [u for g in gpus if (u := _value(g, UTIL)) is not None]
    temps = [t for g in gpus if (t := _value(g, TEMP)) is not None]
    return {
        "clusters": [
            {
                "name": name,
                "gpu_count": sum(len(tiles) for tiles in hosts.values()),
                "hosts": [
                    {"name": h, "gpus": sorted(tiles, key=_by_index)}
                    for h, tiles in sorted(hosts.items())
                ],
            }
            for name, hosts in sorted(clusters.items())
        ],
        "host_count": sum(len(hosts) for hosts in clusters.values()),
        "gpu_count": len(gpus),
        "avg_util": sum(utils) / len(utils) if utils else None,
        "max_temp": max(temps) if temps else None,
    }


def _metric_order(metric: str) -> tuple[int, int, str]:
    known = list(METRICS)
    return (0, known.index(metric), "") if metric in METRICS else (1, 0, metric)


@read_page
def fleet(request: HttpRequest) -> HttpResponse:
    cluster = request.GET.get("cluster") or None
    context: dict[str, Any] = {"cluster": cluster, "error": "", "all_clusters": []}
    try:
        everything = queries.fleet()  # one etcd round trip for the whole page
        context["all_clusters"] = [c["name"] for c in queries.list_clusters(of=everything)]
        known = cluster is None or cluster in context["all_clusters"]
        gpus = queries.list_gpus(cluster=cluster, of=everything) if known else []
    except StoreError as exc:
        context["error"] = f"etcd did not answer: {exc}"
        return render(request, "gpus/fleet.html", context, status=_status(exc))
    context.update(fleet_summary(gpus))
    context["missing_shards"] = shards.missing()  # partial: said on the page, not hidden
    context["live"] = {
        "cluster": cluster,
        "clusters": [c["name"] for c in context["clusters"]],
        "metrics": [UTIL, TEMP],
    }
    return render(request, "gpus/fleet.html", context)


@read_page
def gpu_page(request: HttpRequest, uuid: str) -> HttpResponse:
    try:
        gpu = queries.get_gpu(uuid)
    except (NotFound, InvalidSegment):
        return render(request, "gpus/gpu_missing.html", {"uuid": uuid}, status=404)
    except StoreError as exc:
        context = {"uuid": uuid, "error": f"etcd did not answer: {exc}"}
        return render(request, "gpus/gpu_missing.html", context, status=_status(exc))
    names = sorted(gpu["latest"], key=_metric_order)
    metrics = [
        {
            "name": m,
            "label": METRICS.get(m, (m, ""))[0],
            "unit": METRICS.get(m, (m, ""))[1],
            "latest": gpu["latest"][m],
        }
        for m in names
    ]
    chosen = [m for m in DEFAULT_METRICS if m in gpu["latest"]] or names[:4]
    config = {
        "uuid": gpu["uuid"],
        "first_seen": gpu["first_seen"],
        "last_seen": gpu["last_seen"],
        "telemetry_url": reverse("gpu-telemetry", args=[gpu["uuid"]]),
        "ws_path": f"/ws/gpus/{quote(gpu['uuid'], safe='')}/",
        "metrics": {m["name"]: {"label": m["label"], "unit": m["unit"]} for m in metrics},
        "chosen": chosen,
    }
    context = {"gpu": gpu, "metrics": metrics, "chosen": chosen, "config": config}
    context["workloads"] = queries.workloads(gpu["uuid"])
    context["windows"] = WINDOWS
    context["window"] = default_window(gpu)
    return render(request, "gpus/gpu.html", context)


def _status(exc: StoreError) -> int:
    """The status REST would answer for `exc` (store.errors: 503 when etcd is down)."""
    answer = answer_for(exc)
    return answer.status if answer is not None else 500


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask every page's origin for (admin, Swagger UI too)."""
    return HttpResponsePermanentRedirect(static("gpus/favicon.svg"))
