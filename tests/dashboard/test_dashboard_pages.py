"""Dashboard pages with Django's test client: contents, empty states, escaping, static files."""

from __future__ import annotations

import doctest
import json
import re
from urllib.parse import quote

import pytest

from apps.read import dashboard
from store.errors import StoreUnavailable
from store.keys import Keys
from tests.admin.inventory_support import store_gpu

# etcd keys refuse "/", so no closing tag; an opening one is enough to run script.
HOSTILE = '"><script>alert(1)<script x="'
ESCAPED = "&quot;&gt;&lt;script&gt;alert(1)&lt;script x=&quot;"


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    return Keys(etcd_root)


def test_the_empty_fleet_says_how_to_load_telemetry(client, keys):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No telemetry yet: upload a CSV" in html
    assert "python manage.py ingest FILE" in html
    assert 'id="upload-form" action="/api/v1/csv/upload"' in html
    assert 'name="file"' in html and 'name="cluster"' in html


def test_the_fleet_shows_clusters_hosts_and_a_tile_per_gpu(client, keys):
    store_gpu(keys, "GPU-a", util=87, temp=71, host="node-01", cluster="prod")
    store_gpu(keys, "GPU-b", util=3, temp=30, host="node-01", cluster="prod", gpu_index=1)
    store_gpu(keys, "GPU-c", util=50, temp=45, host="lab-01", cluster="lab")
    html = client.get("/").content.decode()
    assert re.search(r'id="stat-clusters">2<', html)
    assert re.search(r'id="stat-hosts">2<', html)
    assert re.search(r'id="stat-gpus">3<', html)
    assert html.count('class="tile ') == 3
    assert 'class="tile u8 t6" href="/gpus/GPU-a/"' in html
    assert 'class="tile u0 t1" href="/gpus/GPU-b/"' in html
    live = json.loads(re.search(r'id="live-config"[^>]*>(.*?)</script>', html).group(1))
    assert live["clusters"] == ["lab", "prod"]
    only_lab = client.get("/", {"cluster": "lab"}).content.decode()
    assert only_lab.count('class="tile ') == 1
    unknown = client.get("/", {"cluster": "nope"}).content.decode()
    assert "No GPU in cluster “nope”" in unknown


def test_hostile_names_are_escaped_everywhere(client, admin_client, keys):
    model = '"><img src=x onerror=alert(2)>'
    store_gpu(keys, "GPU-evil", host=HOSTILE, cluster="c<b>", model=model)
    store_gpu(keys, f"GPU-{HOSTILE}", host="node-01", cluster="prod")
    admin_client.post("/admin/gpus/gpu/sync/")
    pages = {
        "fleet": client.get("/").content.decode(),
        "gpu": client.get("/gpus/GPU-evil/").content.decode(),
        "gpu-by-hostile-uuid": client.get(f"/gpus/{quote('GPU-' + HOSTILE)}/").content.decode(),
        "missing": client.get(f"/gpus/{quote(HOSTILE)}/").content.decode(),
        "admin-list": admin_client.get("/admin/gpus/gpu/").content.decode(),
    }
    for name, html in pages.items():
        assert "<script>alert" not in html, name
        assert "<img src=x" not in html, name
        assert ESCAPED in html, name
    # json_script escapes < > & in the page's config; the socket path is percent-encoded
    config = re.search(r'id="gpu-config"[^>]*>(.*?)</script>', pages["gpu-by-hostile-uuid"])
    assert "\\u003Cscript\\u003E" in config.group(1)
    ws_path = json.loads(config.group(1))["ws_path"]
    assert ws_path == f"/ws/gpus/{quote('GPU-' + HOSTILE, safe='')}/"


def test_the_gpu_page_has_its_facts_chart_controls_and_feed(client, keys):
    store_gpu(keys, "GPU-a", util=87, temp=71, host="node-01", cluster="prod")
    html = client.get("/gpus/GPU-a/").content.decode()
    assert "node-01" in html and "NVIDIA H100 80GB HBM3" in html
    assert 'id="charts"' in html and 'id="window"' in html
    assert 'value="DCGM_FI_DEV_GPU_UTIL" checked' in html
    config = json.loads(re.search(r'id="gpu-config"[^>]*>(.*?)</script>', html).group(1))
    assert config["telemetry_url"] == "/api/v1/gpus/GPU-a/telemetry"
    assert config["ws_path"] == "/ws/gpus/GPU-a/"
    assert config["last_seen"] == "2025-07-18T20:42:34Z"
    assert "87" in html and "GPU utilization" in html


def test_an_unknown_gpu_answers_404_with_a_way_back(client, keys):
    response = client.get("/gpus/GPU-nope/")
    assert response.status_code == 404
    assert "No GPU “GPU-nope”" in response.content.decode()
    assert client.get("/gpus/../").status_code == 404


def test_pages_say_so_when_etcd_does_not_answer(client, keys, monkeypatch):
    def down(*args, **kwargs):
        raise StoreUnavailable("etcd is unavailable: test")

    monkeypatch.setattr(dashboard.queries, "list_clusters", down)
    monkeypatch.setattr(dashboard.queries, "get_gpu", down)
    for url in ("/", "/gpus/GPU-a/"):
        response = client.get(url)
        assert response.status_code == 503
        assert "etcd is unavailable: test" in response.content.decode()


def test_static_files_are_served_with_debug_off_and_pages_load_nothing_remote(
    client, keys, settings
):
    assert settings.DEBUG is False
    html = client.get("/").content.decode() + client.get("/gpus/x/").content.decode()
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") or a.startswith("data:") for a in assets)
    for path in (
        "/static/gpus/dashboard.css",
        "/static/gpus/gpu.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/uPlot.min.css",
        "/static/admin/css/base.css",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        body = b"".join(response.streaming_content)
        assert len(body) > 100
        assert b"//cdn" not in body and b"googleapis" not in body, path


def test_tile_colour_buckets():
    assert doctest.testmod(dashboard).failed == 0
