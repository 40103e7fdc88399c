"""deploy/grafana: the datasource points Grafana's Prometheus client at our API."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.urls import resolve

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "provisioning"


def test_the_datasource_is_a_prometheus_one_ending_where_our_api_starts() -> None:
    (source,) = yaml.safe_load((GRAFANA / "datasources" / "gpu-telemetry.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["jsonData"]["httpMethod"] == "POST"
    base = source["url"].replace("${GPU_TELEMETRY_URL}", "")
    # Grafana appends these to the datasource URL
    for tail in ("query", "query_range", "series", "labels", "label/gpu/values", "metadata"):
        assert resolve(f"{base}/api/v1/{tail}").url_name.startswith("prom-"), tail
    assert source["secureJsonData"]["httpHeaderValue1"].startswith("Bearer ")


def test_dashboards_come_from_the_mounted_folder() -> None:
    (provider,) = yaml.safe_load((GRAFANA / "dashboards" / "dcgm.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
