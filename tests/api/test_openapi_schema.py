"""The committed OpenAPI schema (docs/openapi.yaml) is what the code generates."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid
from pathlib import Path

import requests
import yaml
from django.core.management import call_command

from tests.api.api_support import generated
from tests.conftest import service_env
from tools import processes

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_committed_schema_matches_the_code(tmp_path, settings):
    # the committed file describes the defaults (the test suite turns write auth off)
    settings.TELEMETRY_WRITE_AUTH, settings.TELEMETRY_READ_AUTH = True, False
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
    # every asset from this site: no absolute or scheme-relative URL in src/href (a bare
    # "cdn" search failed once on the page's random CSRF token)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert not re.search(r"(?:https?:)?//[\w.-]*cdn", page, re.IGNORECASE)


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


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(p, m, op) for p, item in schema["paths"].items() for m, op in item.items()]


def test_every_operation_describes_its_errors_and_has_a_human_description():
    schema = yaml.safe_load(SCHEMA.read_text())
    for path, method, op in operations(schema):
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("description"), where
        assert {"401", "503"} <= set(op["responses"]), where
        if "{" in path:
            assert "404" in op["responses"], where
        for code, answer in op["responses"].items():
            assert answer["description"], (where, code)
            if code >= "400":
                assert "application/json" in answer["content"], (where, code)
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (where, parameter["name"])
    upload = schema["paths"]["/api/v1/csv/upload"]["post"]
    assert {"400", "413", "415"} <= set(upload["responses"])
    assert upload["requestBody"]["required"] is True
    telemetry = schema["paths"]["/api/v1/gpus/{uuid}/telemetry"]["get"]
    assert "text/csv" in telemetry["responses"]["200"]["content"]


def security_of(schema: dict, path: str, method: str) -> list[dict]:
    return schema["paths"][path][method]["security"]


def test_reads_are_marked_open_and_uploads_closed_by_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    for path, method, op in operations(schema):
        assert ({} in op["security"]) == (method == "get"), f"{method} {path}"


def test_the_served_schema_follows_the_access_settings_and_honours_format_json(client, settings):
    settings.TELEMETRY_READ_AUTH, settings.TELEMETRY_WRITE_AUTH = True, False
    answer = client.get("/api/schema/?format=json")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("application/vnd.oai.openapi+json") or answer[
        "Content-Type"
    ].startswith("application/json"), answer["Content-Type"]
    schema = answer.json()
    assert {} not in security_of(schema, "/api/v1/gpus", "get")
    assert {} in security_of(schema, "/api/v1/csv/upload", "post")
    assert "401" in schema["paths"]["/api/v1/gpus"]["get"]["responses"]
    assert client.get("/api/schema/").content.startswith(b"openapi:")


def token_of_new_user(env: dict[str, str]) -> str:
    """A fresh superuser in the children's database, and its API token."""
    name = f"st-{uuid.uuid4().hex[:8]}"

    def manage(*args: str, **extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    manage(
        "createsuperuser",
        "--noinput",
        "--username",
        name,
        "--email",
        f"{name}@localhost",
        DJANGO_SUPERUSER_PASSWORD=uuid.uuid4().hex,
    )
    return manage("api_token", name)


def test_schemathesis_every_check_passes_with_reads_and_writes_closed(
    worker, etcd, redis_server, tmp_path
):
    env = service_env(
        etcd.url,
        redis_server.url,
        ETCD_PREFIX=f"/st-closed-{uuid.uuid4().hex[:8]}",
        TELEMETRY_READ_AUTH="true",
        TELEMETRY_WRITE_AUTH="true",
    )
    token = token_of_new_user(env)
    gateway = processes.start_gateway(tmp_path / "gateway.log", env)
    base = f"http://127.0.0.1:{gateway.port}"
    try:
        schema = requests.get(f"{base}/api/schema/?format=json", timeout=30).json()
        assert {} not in security_of(schema, "/api/v1/gpus", "get")
        assert requests.get(f"{base}/api/v1/gpus", timeout=30).status_code == 401
        done = schemathesis_run(base, "--header", f"Authorization: Bearer {token}")
        report = done.stdout[-12000:] + done.stderr[-3000:]
        assert done.returncode == 0, report
        assert " passed" in done.stdout, report
    finally:
        gateway.stop()
