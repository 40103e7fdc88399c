"""deploy/compose.yaml and deploy/haproxy.cfg, read with PyYAML (no Docker engine).

`docker compose config` and `haproxy -c` run too when those programs are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
HAPROXY = DEPLOY / "haproxy.cfg"
ENTRYPOINT = DEPLOY / "entrypoint.sh"

ETCD = ("etcd1", "etcd2", "etcd3")
STREAMERS = ("streamer-0", "streamer-1")
APP_SERVICES = ("migrate", "gateway1", "gateway2", "worker", "beat", *STREAMERS)
SECRETISH = re.compile(r"SECRET|PASSW|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]+@")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def flags(command: list[str]) -> dict[str, str]:
    out = {}
    for item in command:
        if item.startswith("--") and "=" in item:
            name, _, value = item.partition("=")
            out[name] = value
    return out


def long_running(service: dict[str, Any]) -> bool:
    return service.get("restart", "no") != "no"


def test_every_part_is_there(services: dict[str, dict[str, Any]]) -> None:
    expected = {*ETCD, "redis", "proxy", *APP_SERVICES}
    assert expected <= set(services)
    assert services["worker"].get("deploy", {}).get("replicas", 1) >= 2, "two workers"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"].get("restart") == "no", "migrate is a one-shot"
    for i, name in enumerate(STREAMERS):
        shard = f"{i}/{len(STREAMERS)}"
        command = ["stream", "--file", "/data/sample.csv", "--shard", shard]
        assert services[name]["command"] == command, "each row once: one shard per streamer"


def test_every_app_service_shares_one_postgresql(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    db = services["postgres"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "postgres_password" in db["secrets"] and "postgres-data" in compose["volumes"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DATABASE_URL"] == "postgres://telemetry@postgres:5432/telemetry", name
        assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password", name
        assert "postgres_password" in services[name]["secrets"], name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_app_services_share_one_image(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / build["context"]).resolve() == REPO


def test_roles_are_entrypoint_roles(services: dict[str, dict[str, Any]]) -> None:
    roles = set(re.search(r'^ROLES="([^"]+)"', ENTRYPOINT.read_text(), re.M).group(1).split())
    for name in APP_SERVICES:
        assert services[name]["command"][0] in roles, name


def test_healthcheck_on_every_long_running_service(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if not long_running(service):
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert check.get("interval") and check.get("timeout"), name


def test_app_healthchecks_use_their_role(services: dict[str, dict[str, Any]]) -> None:
    expected = {"gateway1": "gateway", "gateway2": "gateway", "worker": "worker"}
    expected |= {"beat": "beat", **{name: "stream" for name in STREAMERS}}
    for name, role in expected.items():
        test = services[name]["healthcheck"]["test"]
        assert test[1:] == ["/app/deploy/entrypoint.sh", "healthcheck", role], name


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    for name in ("gateway1", "gateway2", "worker", "beat", *STREAMERS):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name
        for member in ETCD:
            assert deps[member]["condition"] == "service_healthy", name
    assert "migrate" not in services["migrate"].get("depends_on", {})


def test_etcd_members_agree(services: dict[str, dict[str, Any]]) -> None:
    clusters = set()
    tokens = set()
    for name in ETCD:
        service = services[name]
        assert service["image"].startswith("quay.io/coreos/etcd:v3.5.")
        f = flags(service["command"])
        assert f["--name"] == name
        clusters.add(f["--initial-cluster"])
        tokens.add(f["--initial-cluster-token"])
        members = dict(item.split("=", 1) for item in f["--initial-cluster"].split(","))
        assert set(members) == set(ETCD)
        for member, url in members.items():
            assert url == f"http://{member}:2380"
        assert f["--initial-advertise-peer-urls"] == members[name]
        assert f["--advertise-client-urls"] == f"http://{name}:2379"
        assert f["--initial-cluster-state"] == "new"
        assert f["--auto-compaction-retention"]
        assert f["--auto-compaction-mode"] in {"periodic", "revision"}
        assert int(f["--quota-backend-bytes"]) > 0
        data_dir = f["--data-dir"]
        mounts = [v.split(":")[1] for v in service["volumes"]]
        assert any(data_dir.startswith(m) for m in mounts), "etcd data on a volume"
    assert len(clusters) == 1, "every member has the same --initial-cluster"
    assert len(tokens) == 1


def test_app_talks_to_all_etcd_members(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        endpoints = services[name]["environment"]["ETCD_ENDPOINTS"].split(",")
        assert sorted(endpoints) == [f"{m}:2379" for m in ETCD], name


def test_redis_persists_with_aof(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert "--dir /data" in command
    assert "--maxmemory-policy noeviction" in command, "a broker must not evict"
    volumes = [v.split(":") for v in redis["volumes"]]
    assert any(target == "/data" and source in compose["volumes"] for source, target in volumes)
    assert "redis_password" in redis["secrets"]


def test_two_gateways_behind_the_proxy(services: dict[str, dict[str, Any]]) -> None:
    proxy = services["proxy"]
    assert any(v.startswith("./haproxy.cfg:") for v in proxy["volumes"])
    assert {"gateway1", "gateway2"} <= set(proxy["depends_on"])
    assert proxy["ports"], "the proxy is the one published port"
    for name in APP_SERVICES:
        assert "ports" not in services[name], f"{name} is reached through the proxy only"
    port = services["gateway1"]["environment"]["PORT"]
    backends = haproxy_backends()
    assert {"gateways", "gateways_ws"} <= set(backends)
    for servers in backends.values():
        assert servers == {"gateway1": f"gateway1:{port}", "gateway2": f"gateway2:{port}"}


def haproxy_backends() -> dict[str, dict[str, str]]:
    backends: dict[str, dict[str, str]] = {}
    current = None
    for raw in HAPROXY.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line.startswith((" ", "\t")):
            words = line.split()
            current = words[1] if words[0] == "backend" else None
            if current:
                backends[current] = {}
            continue
        words = line.split()
        if current and words[0] == "server":
            backends[current][words[1]] = words[2]
    return backends


def test_proxy_handles_websocket_and_health() -> None:
    text = HAPROXY.read_text()
    assert re.search(r"^\s*acl is_websocket path_beg /ws/", text, re.M)
    assert re.search(r"^\s*use_backend gateways_ws if is_websocket", text, re.M)
    assert re.search(r"^\s*timeout tunnel\s+\d+[smh]", text, re.M), "upgraded connections stay"
    assert re.search(r"^\s*http-check send meth GET uri /health .*hdr Host localhost", text, re.M)
    assert re.search(r"^\s*bind :8080$", text, re.M)
    assert "resolvers docker" in text, "restarted gateways are found again"


def test_haproxy_config_is_valid() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ALERT]" not in result.stderr


def test_no_secret_inline(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        env = service.get("environment", {})
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for key, value in env.items():
            if SECRETISH.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} must come from a secret file"
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
            assert not URL_WITH_PASSWORD.search(str(value)), f"{name}: {key} has a password"
        assert "env_file" not in service or all(
            not SECRETISH.search(Path(f).name) for f in service["env_file"]
        )
        text = yaml.safe_dump(service.get("command", ""))
        assert not URL_WITH_PASSWORD.search(text), name
        assert not re.search(r"requirepass\s+\w", text), f"{name}: password on the command line"
    for secret in compose["secrets"].values():
        assert "file" in secret, "secrets come from files"


def test_secret_files_are_the_ones_mounted(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose["secrets"])
    for name in APP_SERVICES:
        env = services[name]["environment"]
        mounted = set(services[name]["secrets"])
        assert mounted <= declared
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {key}"
    for name, secret in compose["secrets"].items():
        default = re.sub(r"\$\{SECRETS_DIR:-([^}]+)\}", r"\1", secret["file"])
        path = (COMPOSE.parent / default).resolve()
        assert path.is_file(), f"development secret {name} missing at {path}"
        assert path.read_text().strip(), name
        assert "/secrets/" in str(path), "kept out of the image by .dockerignore (**/secrets)"


def test_volumes_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
    )
    return result.returncode == 0


def test_docker_compose_config() -> None:
    if not _docker_compose_available():
        pytest.skip("`docker compose` (the Compose v2 CLI plugin) is not installed")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_gateways_and_workers_share_the_large_upload_folder(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """A large upload waits in INGEST_SPOOL_DIR for a worker: both must see the same folder,
    and its body spool must lie on the same volume (a link, not a copy)."""
    mounts = {}
    for name in ("gateway1", "gateway2", "worker"):
        env = services[name]["environment"]
        spool, bodies = Path(env["INGEST_SPOOL_DIR"]), Path(env["FILE_UPLOAD_TEMP_DIR"])
        volumes = dict(reversed(v.split(":")[:2]) for v in services[name]["volumes"])
        holding = [Path(p) for p in volumes if spool.is_relative_to(p)]
        assert holding, f"{name}: INGEST_SPOOL_DIR {spool} is on no volume"
        assert bodies.is_relative_to(holding[0]), f"{name}: bodies spooled off that volume"
        mounts[name] = volumes[str(holding[0])]
    assert len(set(mounts.values())) == 1 and set(mounts.values()) <= set(compose["volumes"])
