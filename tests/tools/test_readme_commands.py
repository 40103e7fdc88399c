"""Every command block of the README's "Use it" section works as written, in a second
terminal next to a `make run`-like stack.

The stack is what `make run` leaves behind: var/local.env written by the launcher's
own function, an `admin` user with its token in var/api-token.txt, a gateway and a
worker. The blocks run in a fresh shell whose environment holds nothing of the
project's settings: only `TELEMETRY_ENV_FILE`, because this checkout's var/ is a
temporary folder here rather than the repository's. The README is parsed, so the
test and the README cannot drift apart; the only rewrite is the gateway's port.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tools import processes, services
from tools.run import write_env_file

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
README_PORT = "127.0.0.1:8000"


def usage_blocks() -> list[str]:
    """The ```sh blocks of the README's "## Use it" section, in order."""
    text = README.read_text()
    section = text.split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def bare_env(env_file: Path, bin_dir: Path) -> dict[str, str]:
    """A new terminal's environment: PATH and locale, none of the project's variables."""
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "TELEMETRY_ENV_FILE": str(env_file),
    }


def manage(checkout: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def second_terminal(
    worker, etcd, redis_server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A checkout with a running stack; yields where and how to run the README's blocks."""
    tmp_path = tmp_path_factory.mktemp("second-terminal")
    checkout = tmp_path / "checkout"
    (checkout / "var").mkdir(parents=True)
    for name in (".venv", "manage.py", "samples"):
        (checkout / name).symlink_to(REPO / name)
    # curl as the README writes it, but an HTTP error fails the block
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text('#!/bin/sh\nexec /usr/bin/curl --fail-with-body -sS "$@"\n')
    (bin_dir / "curl").chmod(0o755)
    port = services.free_port()
    env_file = checkout / "var" / "local.env"
    write_env_file(
        {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_DEBUG": "true",
            "ETCD_ENDPOINTS": etcd.url,
            "ETCD_PREFIX": f"/readme-{uuid.uuid4().hex[:10]}",
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": f"sqlite:///{checkout / 'var' / 'db.sqlite3'}",
            "PORT": str(port),
        },
        env_file,
    )
    env = bare_env(env_file, bin_dir)
    manage(checkout, env, "migrate", "--no-input", "-v", "0")
    manage(
        checkout,
        {**env, "DJANGO_SUPERUSER_PASSWORD": "pw-" + secrets.token_hex(8)},
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "a@localhost",
    )
    manage(checkout, env, "api_token", "admin", "--write", "var/api-token.txt")
    gateway = processes.start_gateway(
        tmp_path / "gateway.log", {**env, "PYTHONPATH": str(REPO)}, port
    )
    try:
        yield {"checkout": checkout, "env": env, "port": port, "gateway": gateway}
    finally:
        gateway.stop()


def run_block(block: str, terminal: dict) -> str:
    script = block.replace(README_PORT, f"127.0.0.1:{terminal['port']}")
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=terminal["checkout"],
        env=terminal["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"{block}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    return done.stdout


def test_the_readme_usage_section_has_the_commands_a_new_user_needs():
    text = "\n".join(usage_blocks())
    for command in (
        "manage.py ingest",
        "manage.py api_token",
        "/api/v1/csv/upload",
        "/api/v1/gpus",
    ):
        assert command in text, command


def test_every_readme_usage_block_works_in_a_second_terminal(second_terminal):
    blocks = usage_blocks()
    outputs = [run_block(block, second_terminal) for block in blocks]
    token = (second_terminal["checkout"] / "var" / "api-token.txt").read_text().strip()
    joined = "\n".join(outputs)
    assert token in outputs[0]
    assert re.search(r"job \S+: done", outputs[0]), outputs[0]
    assert '"state"' in joined and '"created_at"' in joined
    assert "demo-node-01" in joined and "DCGM_FI_DEV_GPU_UTIL" in joined
    assert "Traceback" not in second_terminal["gateway"].log_tail()


def test_the_dashboards_shell_hints_work_as_shown(second_terminal):
    page = requests.get(f"http://127.0.0.1:{second_terminal['port']}/", timeout=30)
    hints = [
        html.unescape(code) for code in re.findall(r'<code class="shell">(.*?)</code>', page.text)
    ]
    assert len(hints) == 2 and "Authorization: Bearer" in hints[0], hints
    sample = (REPO / "samples" / "dcgm_sample.csv").read_text().splitlines()[:200]
    (second_terminal["checkout"] / "metrics.csv").write_text("\n".join(sample) + "\n")
    uploaded = run_block(hints[0], second_terminal)
    assert '"rows_accepted":199' in uploaded.replace(" ", ""), uploaded
    ingested = run_block(hints[1], second_terminal)
    assert re.search(r"job \S+: done", ingested), ingested
