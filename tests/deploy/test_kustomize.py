"""deploy/k8s: every overlay rendered with `kubectl kustomize` and checked offline.

Each rendered object is validated against the Kubernetes OpenAPI schemas shipped in the
`kubernetes-validate` package (strict: unknown fields fail), with the network blocked,
and then checked for what the deployment promises: scaling limits, probes, resources,
PDBs, the etcd StatefulSet, NetworkPolicies, Secrets and settings.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "keda")
NAMESPACES = {"dev": "gpu-telemetry-dev", "prod": "gpu-telemetry", "keda": "gpu-telemetry"}
K8S_VERSION = "1.30"
PART_OF = ("app.kubernetes.io/part-of", "gpu-telemetry")
# DESIGN.md §7: collector 1-10, gateway 2-5. The streamer is not autoscaled: its replicas
# split the file between them (`--shard i/n`), so n changes only with the manifest.
SCALING = {"gateway": (2, 5), "collector": (1, 10)}
APPS = {"gateway": "Deployment", "collector": "Deployment", "streamer": "StatefulSet"}
APPS["beat"] = "Deployment"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
CRD_GROUPS = ("keda.sh/",)

Objects = list[dict[str, Any]]


def render(overlay: str) -> Objects:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the overlays)")
    return request.param


_rendered: dict[str, Objects] = {}


@pytest.fixture(scope="module")
def objects(overlay: str) -> Objects:
    if overlay not in _rendered:
        _rendered[overlay] = render(overlay)
    return _rendered[overlay]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def settings_configmap(objects: Objects) -> dict[str, str]:
    maps = [
        o
        for o in find(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("gpu-telemetry-settings")
    ]
    assert len(maps) == 1
    return maps[0]["data"]


# --- schema ---------------------------------------------------------------------------------


def test_validator_works_offline(no_network: None) -> None:
    good = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {"a": "b"},
    }
    kubernetes_validate.validate(good, K8S_VERSION, strict=True)
    bad = {**good, "spec": {"typo": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_every_object_matches_the_kubernetes_schema(objects: Objects, no_network: None) -> None:
    failures = []
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue  # CRDs (KEDA): checked by test_keda_scaledobject
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{obj['kind']} {obj['apiVersion']}: no schema (unknown kind?)")
    assert not failures, "\n".join(failures)


def test_namespaced_objects_are_in_the_overlay_namespace(overlay: str, objects: Objects) -> None:
    namespaces = find(objects, "Namespace")
    assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACES[overlay]]
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        assert obj["metadata"].get("namespace") == NAMESPACES[overlay], obj["metadata"]["name"]
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- scaling --------------------------------------------------------------------------------


def test_scaling_limits(overlay: str, objects: Objects) -> None:
    limits = {}
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        one(objects, "Deployment", target["name"])
        kinds = {"Resource": "resource", "ContainerResource": "containerResource"}
        metrics = {m.get(kinds.get(m["type"], ""), {}).get("name") for m in hpa["spec"]["metrics"]}
        assert "cpu" in metrics
        limits[target["name"]] = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
    for scaled in find(objects, "ScaledObject"):
        name = scaled["spec"]["scaleTargetRef"]["name"]
        assert name not in limits, f"{name}: an HPA and a ScaledObject would fight"
        limits[name] = (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"])
    assert limits == SCALING
    if overlay == "keda":
        assert find(objects, "ScaledObject", "collector")


def test_replicas_within_limits(objects: Objects) -> None:
    for name, (low, high) in SCALING.items():
        replicas = one(objects, "Deployment", name)["spec"].get("replicas", 1)
        assert low <= replicas <= high, name


def test_cpu_scaled_workloads_request_cpu(objects: Objects) -> None:
    for name in SCALING:
        for c in containers(one(objects, "Deployment", name)):
            assert "cpu" in c["resources"]["requests"], f"{name}/{c['name']}"


def test_beat_is_a_singleton(objects: Objects) -> None:
    beat = one(objects, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in find(objects, "HorizontalPodAutoscaler")
    }
    assert "beat" not in targets


# --- probes, resources, roles -----------------------------------------------------------------


def _http_probe(container: dict[str, Any], kind: str) -> dict[str, Any]:
    probe = container.get(kind)
    assert probe and "httpGet" in probe, f"{container['name']}: no HTTP {kind}"
    return probe["httpGet"]


def test_gateway_probes(objects: Objects) -> None:
    gateway = one(objects, "Deployment", "gateway")
    (container,) = [c for c in pod_spec(gateway)["containers"] if c["name"] == "gateway"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready = _http_probe(container, "readinessProbe")
    alive = _http_probe(container, "livenessProbe")
    assert ready["path"] == "/ready"
    assert alive["path"] == "/health"
    for probe in (ready, alive):
        assert probe["port"] in ports or probe["port"] in ports.values()
        headers = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
        host = headers.get("Host", "")
        allowed = settings_configmap(objects)["DJANGO_ALLOWED_HOSTS"].split(",")
        assert host in allowed, "the probe's Host must pass DJANGO_ALLOWED_HOSTS"
    assert str(ports["http"]) == settings_configmap(objects)["PORT"]


def test_large_uploads_are_parsed_in_the_gateways_pod(objects: Objects) -> None:
    """A large upload waits in the gateway pod's /tmp (no volume is shared between pods): its
    parse goes to a queue of that pod, consumed by a worker in the same pod and /tmp."""
    spec = pod_spec(one(objects, "Deployment", "gateway"))
    by_name = {c["name"]: c for c in spec["containers"]}
    gateway, parser = by_name["gateway"], by_name["parser"]
    env = {c: {e["name"]: e for e in by_name[c]["env"]} for c in ("gateway", "parser")}
    for name in ("gateway", "parser"):
        assert env[name]["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    queue = env["gateway"]["INGEST_PARSE_QUEUE"]["value"]
    assert "$(POD_NAME)" in queue and env["parser"]["CELERY_QUEUES"]["value"] == queue
    assert parser["args"] == ["worker"]
    tmp_size = {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"]["sizeLimit"]
    budget = int(settings_configmap(objects)["INGEST_SPOOL_MAX_BYTES"])
    assert tmp_size == "2Gi" and budget <= 1024**3, "waiting uploads leave room in /tmp"
    tmp = [
        {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"} for c in by_name.values()
    ]
    assert tmp[0] and all(t == tmp[0] for t in tmp), "one /tmp for gateway and parser"
    assert gateway["volumeMounts"] == parser["volumeMounts"]


def test_the_gateways_hpa_counts_the_gateway_container_not_the_parser(objects: Objects) -> None:
    hpa = one(objects, "HorizontalPodAutoscaler", "gateway")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["ContainerResource"]
    metric = hpa["spec"]["metrics"][0]["containerResource"]
    assert (metric["name"], metric["container"]) == ("cpu", "gateway")
    assert "gateway" in {c["name"] for c in containers(one(objects, "Deployment", "gateway"))}


def test_gateway_service(objects: Objects) -> None:
    service = one(objects, "Service", "gateway")
    gateway = one(objects, "Deployment", "gateway")
    assert matches(service["spec"]["selector"], gateway["spec"]["template"]["metadata"]["labels"])
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_collector_liveness_is_a_celery_ping(objects: Objects) -> None:
    collector = one(objects, "Deployment", "collector")
    (container,) = pod_spec(collector)["containers"]
    assert container["args"][0] == "worker"
    command = container["livenessProbe"]["exec"]["command"]
    assert command == ["/app/deploy/entrypoint.sh", "healthcheck", "worker"]
    assert container["livenessProbe"]["timeoutSeconds"] >= 10
    assert pod_spec(collector)["terminationGracePeriodSeconds"] >= 60, "warm shutdown"


def test_every_container_has_resources(objects: Objects) -> None:
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        for c in containers(workload):
            where = f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where


def test_containers_are_locked_down(objects: Objects) -> None:
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec.get("automountServiceAccountToken") is False
        for c in containers(workload):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]


def test_app_roles_and_image(objects: Objects) -> None:
    roles = set(
        re.search(r'^ROLES="([^"]+)"', (REPO / "deploy/entrypoint.sh").read_text(), re.M)
        .group(1)
        .split()
    )
    images = set()
    for name, kind in APPS.items():
        for c in containers(one(objects, kind, name)):
            assert c["args"][0] in roles, f"{name}/{c['name']}"
            images.add(c["image"])
    assert len(images) == 1, "one image for every role"
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        for c in containers(workload):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]
    streamer = one(objects, "StatefulSet", "streamer")
    assert pod_spec(streamer)["containers"][0]["args"][:3] == [
        "stream",
        "--file",
        "/data/sample.csv",
    ]


def streamer_shards(objects: Objects) -> int:
    """n of the streamer StatefulSet, checked: pod i runs `--shard i/n`, n = replicas."""
    streamer = one(objects, "StatefulSet", "streamer")
    (container,) = pod_spec(streamer)["containers"]
    assert container["args"][-2:] == ["--shard", "$(POD_INDEX)/$(STREAM_SHARDS)"]
    env = {e["name"]: e for e in container["env"]}
    index = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.labels['apps.kubernetes.io/pod-index']", "the pod's ordinal"
    count = int(env["STREAM_SHARDS"]["value"])
    assert streamer["spec"]["replicas"] == count, "replicas and STREAM_SHARDS must agree"
    return count


def test_streamer_replicas_split_the_file_between_them(objects: Objects) -> None:
    assert streamer_shards(objects) >= 2
    streamer = one(objects, "StatefulSet", "streamer")
    assert streamer["spec"]["podManagementPolicy"] == "Parallel"
    headless = one(objects, "Service", streamer["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in find(objects, "HorizontalPodAutoscaler")}
    scaled |= {o["spec"]["scaleTargetRef"]["name"] for o in find(objects, "ScaledObject")}
    assert "streamer" not in scaled, "an autoscaler would change n without the shard numbers"


def test_compose_runs_the_same_streamer_shards() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the overlays)")
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"]
    shards = sorted(
        svc["command"][svc["command"].index("--shard") + 1]
        for name, svc in compose.items()
        if name.startswith("streamer")
    )
    for overlay in ("dev", "prod"):
        n = streamer_shards(render(overlay))
        assert shards == sorted(f"{i}/{n}" for i in range(n)), overlay


def test_one_postgresql_for_every_app_pod(objects: Objects) -> None:
    data = settings_configmap(objects)
    assert (
        data["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in data["DATABASE_URL"]
    )
    secret_dir = str(Path(data["DATABASE_PASSWORD_FILE"]).parent)
    for name, kind in APPS.items():
        workload = one(objects, kind, name)
        for c in containers(workload):
            mounts = {m["mountPath"] for m in c["volumeMounts"] if m.get("readOnly")}
            assert secret_dir in mounts, f"{name}/{c['name']} cannot read the password"
        items = {
            i["key"]
            for v in pod_spec(workload)["volumes"]
            if "secret" in v
            for i in v["secret"].get("items", [])
        }
        assert "postgres-password" in items, name
    postgres = one(objects, "StatefulSet", "postgres")
    (container,) = pod_spec(postgres)["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["POSTGRES_PASSWORD_FILE"].endswith("/postgres-password")
    assert (
        env["POSTGRES_USER"] in data["DATABASE_URL"] and env["POSTGRES_DB"] in data["DATABASE_URL"]
    )
    assert one(objects, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432


# --- PDBs -----------------------------------------------------------------------------------


def test_pod_disruption_budgets(objects: Objects) -> None:
    pdbs = find(objects, "PodDisruptionBudget")
    covered = {}
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        hits = [
            o["metadata"]["name"]
            for o in objects
            if o["kind"] in {"Deployment", "StatefulSet"}
            and matches(selector, o["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(hits) == 1, f"PDB {pdb['metadata']['name']} selects {hits}"
        covered[hits[0]] = pdb["spec"]
    assert {"gateway", "collector", "streamer", "etcd"} <= set(covered)
    assert covered["etcd"].get("minAvailable") == 2, "keeps etcd's quorum of 3"
    assert covered["gateway"].get("minAvailable") == 1
    assert "beat" not in covered and "redis" not in covered, "single replicas: would block drains"
    assert "postgres" not in covered, "a single replica: would block drains"


# --- etcd -----------------------------------------------------------------------------------


def _args(container: dict[str, Any]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in container.get("args", []) if a.startswith("--"))


def _quantity(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for unit, factor in units.items():
        if value.endswith(unit):
            return int(value[: -len(unit)]) * factor
    return int(value)


def test_etcd_statefulset(overlay: str, objects: Objects) -> None:
    sts = one(objects, "StatefulSet", "etcd")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    service = one(objects, "Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert matches(service["spec"]["selector"], spec["template"]["metadata"]["labels"])

    anti = pod_spec(sts)["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
        t["podAffinityTerm"]
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    ]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and matches(t["labelSelector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        for t in terms
    )
    if overlay != "dev":
        assert anti.get("requiredDuringSchedulingIgnoredDuringExecution"), "one member per node"

    (claim,) = spec["volumeClaimTemplates"]
    (container,) = pod_spec(sts)["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert claim["metadata"]["name"] in mounts
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    args = _args(container)
    assert args["--name"] == "$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    headless = spec["serviceName"]
    members = dict(m.split("=", 1) for m in args["--initial-cluster"].split(","))
    name = sts["metadata"]["name"]
    assert members == {
        f"{name}-{i}": f"http://{name}-{i}.{headless}:2380" for i in range(spec["replicas"])
    }
    assert args["--initial-advertise-peer-urls"] == f"http://$(POD_NAME).{headless}:2380"
    assert args["--advertise-client-urls"] == f"http://$(POD_NAME).{headless}:2379"
    assert args["--data-dir"].startswith(mounts[claim["metadata"]["name"]])

    assert env["ETCD_AUTO_COMPACTION_RETENTION"]["value"]
    quota = int(env["ETCD_QUOTA_BACKEND_BYTES"]["value"])
    size = _quantity(claim["spec"]["resources"]["requests"]["storage"])
    assert 0 < quota < size, "the quota alarm must come before a full volume"

    endpoints = settings_configmap(objects)["ETCD_ENDPOINTS"].split(",")
    assert sorted(endpoints) == sorted(f"{m}.{headless}:2379" for m in members)


def test_redis_statefulset(objects: Objects) -> None:
    sts = one(objects, "StatefulSet", "redis")
    (container,) = pod_spec(sts)["containers"]
    script = " ".join(container["args"])
    assert "--appendonly yes" in script
    assert "--maxmemory-policy noeviction" in script
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    service = one(objects, "Service", "redis")
    assert matches(service["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    data = settings_configmap(objects)
    for key in ("REDIS_URL", "CELERY_BROKER_URL"):
        assert data[key].startswith("redis://redis:6379/"), key


# --- network policy ---------------------------------------------------------------------------


def test_network_policies_guard_etcd_and_redis(objects: Objects) -> None:
    policies = find(objects, "NetworkPolicy")
    for sts_name, ports in (("etcd", {2379, 2380}), ("redis", {6379}), ("postgres", {5432})):
        labels = one(objects, "StatefulSet", sts_name)["spec"]["template"]["metadata"]["labels"]
        guarding = [p for p in policies if matches(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert guarding, f"no NetworkPolicy selects {sts_name}"
        from_ours = [
            rule
            for p in guarding
            for rule in p["spec"]["ingress"]
            if any(
                f.get("podSelector", {}).get("matchLabels") == dict([PART_OF]) for f in rule["from"]
            )
        ]
        assert from_ours, f"{sts_name}: our pods are not let in"
        assert {port["port"] for rule in from_ours for port in rule["ports"]} == ports
        for p in guarding:
            assert p["spec"]["policyTypes"] == ["Ingress"]
            for rule in p["spec"]["ingress"]:
                for source in rule["from"]:
                    assert source, "an empty peer would let everyone in"


def test_every_pod_is_labelled_part_of(objects: Objects) -> None:
    key, value = PART_OF
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels.get(key) == value, workload["metadata"]["name"]


# --- settings and secrets ---------------------------------------------------------------------


def _known_env_names() -> set[str]:
    names = set()
    settings = (REPO / "telemetry_site" / "settings.py").read_text()
    for name in re.findall(r"env_\w+\(\s*\"([A-Z0-9_]+)\"", settings):
        names.add(name)
    for name in list(names):
        names.add(f"{name}_FILE")
    for path in ("deploy/entrypoint.sh", "deploy/healthcheck.py"):
        text = (REPO / path).read_text()
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text))
        names |= set(re.findall(r"environ\.get\(\s*\"([A-Z][A-Z0-9_]+)\"", text))
        names |= set(re.findall(r"\b(REDIS_URL|CELERY_BROKER_URL|CHANNEL_REDIS_URL)\b", text))
    return names


def test_configmap_names_are_settings(objects: Objects) -> None:
    data = settings_configmap(objects)
    unknown = set(data) - _known_env_names()
    assert not unknown, f"read by nothing (typo?): {sorted(unknown)}"
    for key in ("ETCD_ENDPOINTS", "ETCD_PREFIX", "CELERY_BROKER_URL", "TELEMETRY_CLUSTER"):
        assert key in data
    assert data["DJANGO_DEBUG"] == "false"
    for key, value in data.items():
        assert not re.search(r"://[^/@\s]*:[^/@\s]+@", value), f"{key} carries a password"
        if re.search(r"SECRET|PASSW|TOKEN", key):
            assert key.endswith("_FILE"), f"{key}: secrets are files of the Secret"


def _secret_refs(objects: Objects) -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                keys = {i["key"] for i in volume["secret"].get("items", [])}
                refs.setdefault(volume["secret"]["secretName"], set()).update(keys)
        for c in containers(workload):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
    for auth in find(objects, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            refs.setdefault(ref["name"], set()).add(ref["key"])
    return refs


def test_secret_files_match_the_settings(objects: Objects) -> None:
    data = settings_configmap(objects)
    mounts = set()
    for name, kind in APPS.items():
        for c in containers(one(objects, kind, name)):
            mounts |= {m["mountPath"] for m in c["volumeMounts"] if m.get("readOnly")}
    for key in ("DJANGO_SECRET_KEY_FILE", "REDIS_PASSWORD_FILE"):
        assert str(Path(data[key]).parent) in mounts, key


def test_secrets_dev_generated_prod_external(overlay: str, objects: Objects) -> None:
    refs = _secret_refs(objects)
    secrets = {s["metadata"]["name"]: s for s in find(objects, "Secret")}
    example = yaml.safe_load((K8S / "overlays" / "prod" / "secret.example.yaml").read_text())
    if overlay == "dev":
        for name, keys in refs.items():
            assert name in secrets, f"{name} referenced but not generated"
            assert name.startswith("gpu-telemetry-secrets-"), "hash suffix rolls the pods"
            assert keys <= set(secrets[name]["data"]), name
        assert set(example["stringData"]) == set(next(iter(secrets.values()))["data"])
    else:
        assert not secrets, "prod secrets are created out of band, never from the repo"
        assert set(refs) == {example["metadata"]["name"]}
        assert set().union(*refs.values()) <= set(example["stringData"])
        assert set(example["stringData"].values()) == {"REPLACE_ME"}
        assert example["metadata"]["namespace"] == NAMESPACES[overlay]


# --- overlays -------------------------------------------------------------------------------


def _cpu_millis(value: str) -> int:
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


def test_prod_is_bigger_than_dev() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the overlays)")
    dev, prod = render("dev"), render("prod")
    for kind, name in [
        ("Deployment", "gateway"),
        ("Deployment", "collector"),
        ("StatefulSet", "streamer"),
        ("StatefulSet", "etcd"),
        ("StatefulSet", "redis"),
    ]:
        d, p = one(dev, kind, name), one(prod, kind, name)
        dc, pc = pod_spec(d)["containers"][0], pod_spec(p)["containers"][0]
        assert _cpu_millis(pc["resources"]["requests"]["cpu"]) > _cpu_millis(
            dc["resources"]["requests"]["cpu"]
        ), name
        assert p["spec"].get("replicas", 1) >= d["spec"].get("replicas", 1), name
    assert (
        one(prod, "Deployment", "gateway")["spec"]["replicas"]
        > one(dev, "Deployment", "gateway")["spec"]["replicas"]
    )
    ingress = one(prod, "Ingress", "gateway")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "gateway"
    host = ingress["spec"]["rules"][0]["host"]
    assert host in settings_configmap(prod)["DJANGO_ALLOWED_HOSTS"].split(",")
    assert not find(dev, "Ingress")


def test_keda_scaledobject() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the overlays)")
    objects = render("keda")
    scaled = one(objects, "ScaledObject", "collector")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "collector"
    one(objects, "Deployment", "collector")
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == SCALING["collector"]
    (redis,) = [t for t in spec["triggers"] if t["type"] == "redis"]
    settings = (REPO / "telemetry_site" / "settings.py").read_text()
    queue = re.search(r'CELERY_TASK_DEFAULT_QUEUE = "([^"]+)"', settings).group(1)
    assert redis["metadata"]["listName"] == queue == "telemetry"
    assert int(redis["metadata"]["listLength"]) > 0
    host, port = redis["metadata"]["address"].rsplit(":", 1)
    assert host.startswith(f"redis.{scaled['metadata']['namespace']}.svc"), "KEDA runs elsewhere"
    assert port == "6379"
    auth = one(objects, "TriggerAuthentication", redis["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"][0]["key"] == "redis-password"
    assert not [
        h
        for h in find(objects, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == "collector"
    ]
    keda_in = [
        p
        for p in find(objects, "NetworkPolicy")
        for rule in p["spec"]["ingress"]
        for source in rule["from"]
        if source.get("namespaceSelector", {})
        .get("matchLabels", {})
        .get("kubernetes.io/metadata.name")
        == "keda"
    ]
    assert keda_in, "KEDA's operator must reach Redis through the NetworkPolicy"
