"""Container health check, one per role: `entrypoint.sh healthcheck [ROLE]`.

Exit 0 when healthy, 1 when not (Docker HEALTHCHECK and Kubernetes exec probes).
Kept light: nothing here imports Django or the project; each check starts in well
under a second.

    gateway          GET http://127.0.0.1:$PORT/health (liveness: the process answers)
    gateway-ready    GET http://127.0.0.1:$PORT/ready  (etcd and the broker answer)
    worker           the broker answers PING, then a Celery `ping` of this container's
                     own node, celery@<hostname>, through the broker: the worker's main
                     loop is alive and consuming control messages. Same answer as
                     `celery -A telemetry_site inspect ping -d celery@$HOSTNAME`,
                     without importing the project.
    beat, stream,
    scrape           the broker answers PING (these have no port; a dead process ends
                     the container, so what is left to report is the dependency)
    migrate, manage  always healthy (one-shots)

The role comes from the argument, else from the file the entrypoint wrote at start
($ROLE_FILE, default /tmp/telemetry-role), else from $TELEMETRY_ROLE.
The requests carry `Host: localhost` so DJANGO_ALLOWED_HOSTS must contain localhost.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request

TIMEOUT_S = float(os.environ.get("HEALTHCHECK_TIMEOUT", "5"))


def _secret(name: str, default: str = "") -> str:
    """Same rule as telemetry_site.env.env_secret: NAME, else the file NAME_FILE."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return default


def broker_url() -> str:
    redis_url = _secret("REDIS_URL", "redis://127.0.0.1:6379/0")
    return _secret("CELERY_BROKER_URL", redis_url)


def check_http(path: str) -> str | None:
    port = os.environ.get("PORT", "8000")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": "localhost"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if response.status != 200:
                return f"{path} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{path} answered {exc.code}"
    except OSError as exc:
        return f"{path} unreachable: {exc}"
    return None


def check_broker() -> str | None:
    import redis

    client = redis.Redis.from_url(
        broker_url(), socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"broker unreachable: {exc}"
    finally:
        client.close()
    return None


def check_worker() -> str | None:
    # A plain PING first: when Redis is down this answers at once, where Celery's
    # connection would retry for seconds.
    problem = check_broker()
    if problem:
        return problem
    from celery import Celery

    node = os.environ.get("CELERY_NODE_NAME") or f"celery@{socket.gethostname()}"
    app = Celery("healthcheck", broker=broker_url())
    # The project's Celery settings accept msgpack, and the worker answers in it.
    app.conf.accept_content = ["msgpack", "json"]
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 1
    try:
        replies = app.control.ping(destination=[node], timeout=TIMEOUT_S)
    except Exception as exc:
        return f"ping of {node} failed: {exc}"
    finally:
        app.close()
    if not any(node in reply for reply in replies):
        return f"{node} did not answer ping within {TIMEOUT_S:g}s"
    return None


CHECKS = {
    "gateway": lambda: check_http("/health"),
    "gateway-ready": lambda: check_http("/ready"),
    "worker": check_worker,
    "beat": check_broker,
    "stream": check_broker,
    "scrape": check_broker,
    "migrate": lambda: None,
    "manage": lambda: None,
}


def current_role(argv: list[str]) -> str:
    if argv:
        return argv[0]
    path = os.environ.get("ROLE_FILE") or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "telemetry-role"
    )
    try:
        with open(path, encoding="utf-8") as fh:
            role = fh.read().strip()
    except OSError:
        role = ""
    return role or os.environ.get("TELEMETRY_ROLE", "")


def main(argv: list[str]) -> int:
    role = current_role(argv)
    check = CHECKS.get(role)
    if check is None:
        print(f"healthcheck: unknown role {role!r} (known: {', '.join(CHECKS)})", file=sys.stderr)
        return 1
    problem = check()
    if problem:
        print(f"unhealthy ({role}): {problem}", file=sys.stderr)
        return 1
    print(f"healthy ({role})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
