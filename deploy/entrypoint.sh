#!/bin/sh
# One image, every role: the first argument picks what this container runs.
#
#   gateway            ASGI server (uvicorn telemetry_site.asgi:application) on $PORT
#   worker             Celery worker (the "collector"), queue $CELERY_QUEUES (telemetry)
#   beat               Celery beat (run exactly one)
#   stream ARGS...     python manage.py stream ARGS...   (e.g. --file /data/sample.csv)
#   scrape ARGS...     python manage.py scrape ARGS...
#   migrate ARGS...    python manage.py migrate --noinput ARGS...  (one-shot)
#   manage ARGS...     python manage.py ARGS...                    (any command)
#   healthcheck [ROLE] the container health check (deploy/healthcheck.py); ROLE defaults
#                      to the role this container was started with
#   help               this text
#
# Anything else is run as given when it is a program on PATH (`sh`, `python`, ...).
#
# Secrets are read from files (never baked into the image): DJANGO_SECRET_KEY_FILE and
# ETCD_PASSWORD_FILE are read by the settings themselves; REDIS_PASSWORD_FILE is put
# into REDIS_URL, CELERY_BROKER_URL and CHANNEL_REDIS_URL here, for those of them that
# are set and carry no credentials, so that ConfigMaps and compose files hold only
# password-less URLs (redis://redis:6379/0).
#
# ENTRYPOINT_DRY_RUN=1 prints the command instead of running it (used by the tests).
set -eu

APP_DIR=${APP_DIR:-/app}
ROLE_FILE=${ROLE_FILE:-${TMPDIR:-/tmp}/telemetry-role}
ROLES="gateway worker beat stream scrape migrate manage healthcheck help"

usage() {
    sed -n '2,16s/^# \{0,1\}//p' "$0"
}

# URL with the password of REDIS_PASSWORD_FILE, unless the URL already has credentials.
with_redis_password() {
    python - "$1" "$2" <<'PY'
import sys
import urllib.parse

url, path = sys.argv[1], sys.argv[2]
parts = urllib.parse.urlsplit(url)
if "@" in parts.netloc or parts.scheme not in ("redis", "rediss"):
    print(url)
    raise SystemExit(0)
with open(path, encoding="utf-8") as fh:
    password = urllib.parse.quote(fh.read().strip(), safe="")
print(urllib.parse.urlunsplit(parts._replace(netloc=f":{password}@{parts.netloc}")))
PY
}

inject_redis_password() {
    [ -n "${REDIS_PASSWORD_FILE:-}" ] || return 0
    if [ ! -r "$REDIS_PASSWORD_FILE" ]; then
        echo "entrypoint: REDIS_PASSWORD_FILE=$REDIS_PASSWORD_FILE cannot be read" >&2
        exit 78
    fi
    for name in REDIS_URL CELERY_BROKER_URL CHANNEL_REDIS_URL; do
        eval "value=\${$name:-}"
        if [ -n "$value" ]; then
            value=$(with_redis_password "$value" "$REDIS_PASSWORD_FILE")
            eval "$name=\$value"
            export "${name?}"
        fi
    done
}

run() {
    if [ "${ENTRYPOINT_DRY_RUN:-0}" = "1" ]; then
        printf '%s\n' "$*"
        exit 0
    fi
    exec "$@"
}

role=${1:-help}
[ "$#" -gt 0 ] && shift

case " $ROLES " in
    *" $role "*) ;;
    *)
        if ! command -v "$role" >/dev/null 2>&1; then
            echo "entrypoint: unknown role '$role' (roles: $ROLES)" >&2
            exit 64
        fi
        ;;
esac

case "$role" in
    # The health check runs as a separate process: it learns the role from this file.
    gateway | worker | beat | stream | scrape | migrate | manage)
        printf '%s\n' "$role" >"$ROLE_FILE" 2>/dev/null || true
        ;;
esac
inject_redis_password
cd "$APP_DIR"

case "$role" in
    gateway)
        # behind the proxy / Ingress, which appends the caller to X-Forwarded-For: throttle
        # anonymous callers by that address, not by what they wrote there (docs/SECURITY.md)
        export THROTTLE_NUM_PROXIES="${THROTTLE_NUM_PROXIES:-1}"
        run uvicorn telemetry_site.asgi:application \
            --host "${BIND_HOST:-0.0.0.0}" --port "${PORT:-8000}" \
            --workers "${WEB_CONCURRENCY:-1}" \
            --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}" \
            --lifespan off --no-server-header --ws-max-size 1048576 \
            --timeout-graceful-shutdown "${GRACEFUL_TIMEOUT:-20}" \
            --log-level "$(printf '%s' "${LOG_LEVEL:-info}" | tr '[:upper:]' '[:lower:]')" \
            "$@"
        ;;
    worker)
        run celery -A telemetry_site worker \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --concurrency "${WORKERS:-2}" \
            --queues "${CELERY_QUEUES:-telemetry}" \
            --hostname "celery@%h" \
            --without-gossip --without-mingle \
            "$@"
        ;;
    beat)
        run celery -A telemetry_site beat \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --schedule "${BEAT_SCHEDULE_FILE:-$APP_DIR/var/celerybeat-schedule}" \
            "$@"
        ;;
    stream | scrape)
        run python manage.py "$role" "$@"
        ;;
    migrate)
        run python manage.py migrate --noinput "$@"
        ;;
    manage)
        run python manage.py "$@"
        ;;
    healthcheck)
        run python "$APP_DIR/deploy/healthcheck.py" "$@"
        ;;
    help)
        usage
        ;;
    *)
        run "$role" "$@"
        ;;
esac
