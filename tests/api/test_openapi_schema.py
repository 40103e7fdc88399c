"""The committed OpenAPI schema (docs/openapi.yaml) is what the code generates."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import requests
import yaml
from django.core.management import call_command

from tests.api.api_support import generated

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_committed_schema_matches_the_code(tmp_path):
    out = tmp_path / "openapi.yaml"
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(out), stdout=io.StringIO()
    )
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(SCHEMA.read_text()), (
        "docs/openapi.yaml is stale: run `make openapi`"
    )


def test_schema_documents_every_endpoint_and_the_bearer_scheme():
    schema = yaml.safe_load(SCHEMA.read_text())
    paths = set(schema["paths"])
    for path in (
        "/api/v1/csv/upload",
        "/api/v1/gpus",
        "/api/v1/gpus/{uuid}",
        "/api/v1/gpus/{uuid}/latest",
        "/api/v1/gpus/{uuid}/telemetry",
        "/api/v1/hosts",
        "/api/v1/clusters",
        "/api/v1/ingest/jobs/{job_id}",
    ):
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_swagger_ui_is_served_from_local_assets(client):
    page = client.get("/swagger/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()


def schemathesis_run(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` with every check against the gateway's own served schema."""
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(SCHEMATHESIS_CONFIG),
        "run",
        f"{base}/api/schema/?format=json",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--seed",
        "7",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--continue-on-failure",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900)


def test_schemathesis_every_check_passes_against_a_live_gateway(gateway):
    data = generated(hosts=2, gpus_per_host=2, samples=5, seed=3)
    upload = requests.post(
        f"{gateway}/api/v1/csv/upload",
        data=data,
        headers={"Content-Type": "text/csv"},
        timeout=60,
    )
    assert upload.status_code == 202, upload.text
    done = schemathesis_run(gateway)
    report = done.stdout[-12000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "failed" not in done.stdout.lower(), report
