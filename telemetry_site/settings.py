"""Django settings: flat, env-driven, strict. Every variable is listed in docs/OPERATIONS.md."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from observability.logs import logging_config
from telemetry_site.env import (
    env_bool,
    env_duration,
    env_int,
    env_list,
    env_rate,
    env_secret,
    env_shards,
    env_str,
    env_tiers,
    with_password,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Django core -------------------------------------------------------------
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required when DJANGO_DEBUG is off"
        )
    SECRET_KEY = "insecure-development-key-set-DJANGO_SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# Served over HTTPS (directly or behind a proxy that sets X-Forwarded-Proto): secure
# cookies, HSTS and a redirect to https, except for the probes and /metrics, which
# orchestrators call over plain HTTP inside the cluster.
HTTPS = env_bool("DJANGO_HTTPS", False)
if HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.accounts",
    "apps.ingest",
    "apps.read",
    # After apps.read, whose graphene/graphiql.html (local assets, no CDN) must win.
    "graphene_django",
]

MIDDLEWARE = [
    # outermost: it swaps a streamed body for an async one last (telemetry_site/streaming.py)
    "telemetry_site.streaming.AsyncStreaming",
    "observability.middleware.RequestMetricsMiddleware",
    # Before everything that makes or reads a body: it encodes the final response.
    "telemetry_site.compression.CompressionMiddleware",
    "apps.read.middleware.PartialShardsMiddleware",
    "apps.api.errors.ApiJsonErrors",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "telemetry_site.urls"
WSGI_APPLICATION = "telemetry_site.wsgi.application"
ASGI_APPLICATION = "telemetry_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context.access",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")
    )
}
# The password apart from the URL (DATABASE_PASSWORD or DATABASE_PASSWORD_FILE), so that
# the URL can live in plain configuration and the password in a mounted secret.
DATABASE_PASSWORD = env_secret("DATABASE_PASSWORD")
if DATABASE_PASSWORD:
    DATABASES["default"]["PASSWORD"] = DATABASE_PASSWORD
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes write the one file: each worker process mirrors the GPUs its chunks
    # register, the gateway its sessions. With the write-ahead log a commit is one append and
    # no fsync (synchronous=NORMAL: a power cut may lose the last commits, never the file),
    # so a writer holds the lock for less than a millisecond and readers never wait; a
    # first upload's mirror cost half as much (docs/PERFORMANCE.md). IMMEDIATE takes the
    # lock at BEGIN: a writer meeting another waits there, not failing at its first write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        transaction_mode="IMMEDIATE",
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only `collectstatic` needs a STATIC_ROOT; WhiteNoise serves from the apps' folders.
STATIC_ROOT = env_str("STATIC_ROOT", "") or None
# WhiteNoise serves static files whatever DJANGO_DEBUG says, straight from the apps'
# static/ folders (finders), so no `collectstatic` step exists anywhere: not in tests,
# not in the image. Files are indexed once at start-up (re-scanned per request in DEBUG).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads are spooled to disk past this size, so a large CSV never sits in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# The largest body of any route other than the upload (GraphQL, admin forms); the HTTP
# guard (telemetry_site/guard.py) refuses more with 413 before reading it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Where request bodies past FILE_UPLOAD_MAX_MEMORY_SIZE are spooled (empty: the system's
# temporary directory); the guard bounds what one request may write there.
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None
# A multipart file part past FILE_UPLOAD_MAX_MEMORY_SIZE goes to FILE_UPLOAD_TEMP_DIR under the
# guard's body prefix, so that one a killed gateway left is swept like a raw body.
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "telemetry_site.guard.SweptFileUploadHandler",
]
# Slow clients: a body must arrive within HTTP_BODY_GRACE plus one second per
# HTTP_BODY_MIN_RATE bytes received so far, or it is cut off with 408.
HTTP_BODY_GRACE = env_duration("HTTP_BODY_GRACE", 10.0)
HTTP_BODY_MIN_RATE = env_int("HTTP_BODY_MIN_RATE", 16 * 1024, minimum=1)

# --- REST API ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "apps.api.openapi.TelemetryAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apps.api.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 100, minimum=1),
    "EXCEPTION_HANDLER": "apps.read.errors.exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.auth.BearerOrTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.auth.TelemetryAccess"],
    # per-view scope (uploads, reads); a rate of `off` turns a scope off. DRF's class with
    # its histories held as arrays, not pickled per request (apps/accounts/throttles.py)
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.throttles.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "uploads": env_rate("THROTTLE_UPLOADS", "120/min"),
        "reads": env_rate("THROTTLE_READS", "6000/min"),
        # password checks (~0.5 s of CPU each): per client address, and per process
        "logins": env_rate("THROTTLE_LOGINS", "10/min"),
        "logins-process": env_rate("THROTTLE_LOGINS_PROCESS", "30/min"),
    },
    # The client address an anonymous caller is throttled by: with N proxies in front, each
    # appending to X-Forwarded-For, the N-th address from its end (the one the nearest proxy
    # saw); 0: the peer's address. Unset, DRF would take the header as the client wrote it.
    "NUM_PROXIES": env_int("THROTTLE_NUM_PROXIES", 0, minimum=0),
    # `format` is the telemetry endpoint's own parameter (json, csv, wide), not DRF's.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU telemetry API",
    "DESCRIPTION": (
        "NVIDIA DCGM telemetry: upload CSV exports, list GPUs, hosts and clusters, read a "
        "GPU's samples over a time window (JSON pages, columns or CSV). Reads are open "
        "unless TELEMETRY_READ_AUTH is on; uploads need `Authorization: Bearer <token>` "
        'unless TELEMETRY_WRITE_AUTH is off. Every error is JSON: `{"detail": ...}` or one '
        "entry per bad parameter. Times are RFC 3339 in UTC. More in docs/API.md."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The read lane (telemetry_site/lane.py): the hot read GETs answered without Django's
# middleware and DRF's per-request machinery, same answers; off: Django answers all.
READ_LANE = env_bool("READ_LANE", True)
# threads of the lane's own pool for store reads: a stalled shard holds these, never the
# event loop's default pool (upload spooling, compression)
READ_LANE_THREADS = env_int("READ_LANE_THREADS", 32, minimum=1)

# --- GraphQL (docs/GRAPHQL.md) ------------------------------------------------------
ENABLE_GRAPHQL = env_bool("ENABLE_GRAPHQL", True)
GRAPHENE = {"SCHEMA": "apps.read.graphql_schema.schema"}

# --- Access ------------------------------------------------------------------
# Writes need a token (or an admin session) unless TELEMETRY_WRITE_AUTH is off;
# reads are open for local use unless TELEMETRY_READ_AUTH is on (REST, GraphQL, WebSocket).
TELEMETRY_WRITE_AUTH = env_bool("TELEMETRY_WRITE_AUTH", True)
TELEMETRY_READ_AUTH = env_bool("TELEMETRY_READ_AUTH", False)
LOGIN_URL = "admin:login"

# --- etcd store ----------------------------------------------------------------
ETCD_ENDPOINTS = env_list("ETCD_ENDPOINTS", ["127.0.0.1:2379"])
# More etcd clusters, one per GPU cluster that needs its own (store/shards.py); every
# other cluster lives in ETCD_ENDPOINTS, the `default` shard.
ETCD_SHARDS = env_shards("ETCD_SHARDS")
ETCD_PREFIX = env_str("ETCD_PREFIX", "/telemetry")
ETCD_TIMEOUT = env_duration("ETCD_TIMEOUT", 5.0)
ETCD_USER = env_str("ETCD_USER", "")
ETCD_PASSWORD = env_secret("ETCD_PASSWORD")
ETCD_CA_CERT = env_str("ETCD_CA_CERT", "")
ETCD_CERT = env_str("ETCD_CERT", "")  # client certificate and key, for etcd's mutual TLS
ETCD_KEY = env_str("ETCD_KEY", "")
if bool(ETCD_CERT) != bool(ETCD_KEY) or (ETCD_CERT and not ETCD_CA_CERT):
    raise ImproperlyConfigured("ETCD_CERT and ETCD_KEY go together, and need ETCD_CA_CERT")
if bool(ETCD_USER) != bool(ETCD_PASSWORD):
    raise ImproperlyConfigured("ETCD_USER and ETCD_PASSWORD go together: set both or neither")

# --- Celery on Redis ---------------------------------------------------------------
# REDIS_PASSWORD (or REDIS_PASSWORD_FILE) is put into the Redis URLs below, so that
# the URLs themselves can live in plain configuration.
REDIS_PASSWORD = env_secret("REDIS_PASSWORD")
REDIS_URL = with_password(env_secret("REDIS_URL", "redis://127.0.0.1:6379/0"), REDIS_PASSWORD)
CELERY_BROKER_URL = with_password(env_secret("CELERY_BROKER_URL", REDIS_URL), REDIS_PASSWORD)
CELERY_TASK_SERIALIZER = "msgpack"
CELERY_ACCEPT_CONTENT = ["msgpack", "json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "telemetry"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task taken by a worker that dies without acknowledging it (SIGKILL, lost host) goes back
# to the queue after this long (Redis transport). It must exceed the longest task run and
# retry countdown (30 s), or a slow task is delivered twice (harmless: writes are
# idempotent, docs/RELIABILITY.md). Workers sweep for such tasks every tenth of it (1-100 s).
BROKER_VISIBILITY_TIMEOUT = env_duration("CELERY_VISIBILITY_TIMEOUT", 3600.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": min(max(BROKER_VISIBILITY_TIMEOUT / 10, 1.0), 100.0),
    "unacked_restore_throttle": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A worker process keeps its database connection for this many tasks (Celery's Django fixup
# closes it before and after each task otherwise: a connection per chunk, to mirror a few
# GPUs). One that broke is dropped by the failed transaction's rollback (Django's atomic).
CELERY_DB_REUSE_MAX = 1000

# --- Live feed (Channels) --------------------------------------------------------
ENABLE_WEBSOCKET = env_bool("ENABLE_WEBSOCKET", True)
CHANNEL_REDIS_URL = with_password(env_secret("CHANNEL_REDIS_URL", REDIS_URL), REDIS_PASSWORD)
CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: a group message is one PUBLISH that each gateway process fans out
        # to its own clients, instead of one Redis list push per subscribed client.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": CHANNEL_REDIS_URL}]},
    }
}
LIVE_CLIENT_BUFFER = env_int("LIVE_CLIENT_BUFFER", 256, minimum=1)
LIVE_MAX_SUBSCRIPTIONS = env_int("LIVE_MAX_SUBSCRIPTIONS", 1000, minimum=1)  # per connection
LIVE_MAX_FRAME_BYTES = env_int("LIVE_MAX_FRAME_BYTES", 64 * 1024, minimum=1024)

# --- Pipeline ----------------------------------------------------------------
TELEMETRY_CLUSTER = env_str("TELEMETRY_CLUSTER", "default")
# Samples per chunk task: a task's Celery, Redis and etcd share is fixed whatever its size
# (20,000 against 5,000: a third less CPU storing; docs/PERFORMANCE.md, issue 17)
INGEST_CHUNK_ROWS = env_int("INGEST_CHUNK_ROWS", 20_000, minimum=1)
# The chunk payload version ingest writes (workers/payload.py): 1 while workers of a release
# before version 2 still run (they refuse version 2; every worker reads both).
CHUNK_PAYLOAD_VERSION = env_int("CHUNK_PAYLOAD_VERSION", 2, minimum=1)
if CHUNK_PAYLOAD_VERSION not in (1, 2):
    raise ImproperlyConfigured(f"CHUNK_PAYLOAD_VERSION={CHUNK_PAYLOAD_VERSION}: expected 1 or 2")
# 1 M samples (20 MB): with 512 GPUs a GPU's block holds ~2,000 samples, not ~200 (per
# block costs dominate the workers' and etcd's CPU: docs/PERFORMANCE.md, issue 17)
INGEST_BUFFER_ROWS = env_int("INGEST_BUFFER_ROWS", 1_000_000, minimum=1)
INGEST_MAX_ERRORS = env_int("INGEST_MAX_ERRORS", 20, minimum=0)
INGEST_MAX_UPLOAD_BYTES = env_int("INGEST_MAX_UPLOAD_BYTES", 1024**3, minimum=1)
# Prometheus remote write: the largest request body, compressed or decompressed, and
# the most samples in one request (Prometheus sends 2,000 per request by default).
REMOTE_WRITE_MAX_BYTES = env_int("REMOTE_WRITE_MAX_BYTES", 8 * 1024**2, minimum=1)
REMOTE_WRITE_MAX_SAMPLES = env_int("REMOTE_WRITE_MAX_SAMPLES", 50_000, minimum=1)
INGEST_MAX_DECOMPRESSED_BYTES = env_int("INGEST_MAX_DECOMPRESSED_BYTES", 8 * 1024**3, minimum=1)
INGEST_MAX_ROWS = env_int("INGEST_MAX_ROWS", 100_000_000, minimum=1)
# Samples one writer (a user's token or session; all anonymous writers together) may send a
# UTC day, uploads and remote write alike; 0: no quota. The default holds the design's fleet
# of 10,000 GPUs x 10 metrics every 10 s (864 M a day) sent with one token.
INGEST_QUOTA_SAMPLES_PER_DAY = env_int("INGEST_QUOTA_SAMPLES_PER_DAY", 1_000_000_000, minimum=0)
INGEST_MAX_LINE_CHARS = env_int("INGEST_MAX_LINE_CHARS", 256 * 1024, minimum=64)
INGEST_MAX_METRICS_PER_GPU = env_int("INGEST_MAX_METRICS_PER_GPU", 1000, minimum=1)
INGEST_MAX_GZIP_RATIO = env_int("INGEST_MAX_GZIP_RATIO", 100, minimum=1)
INGEST_MAX_PARSE_SECONDS = env_duration("INGEST_MAX_PARSE_SECONDS", 600.0)
INGEST_MAX_FUTURE = env_duration("INGEST_MAX_FUTURE", 300.0)
INGEST_ASYNC_BYTES = env_int("INGEST_ASYNC_BYTES", 64 * 1024**2, minimum=0)
INGEST_SPOOL_DIR = env_str(
    "INGEST_SPOOL_DIR", os.path.join(tempfile.gettempdir(), "telemetry-uploads")
)
# The most bytes large uploads may hold in INGEST_SPOOL_DIR while they wait for their parse:
# past it an upload is refused (503, Retry-After) before its file is kept.
INGEST_SPOOL_MAX_BYTES = env_int("INGEST_SPOOL_MAX_BYTES", 4 * 1024**3, minimum=1)
# The Celery queue a large upload's parse is sent to ("": the default queue). Set it where
# INGEST_SPOOL_DIR is not shared by every worker: a queue per gateway, consumed by workers
# that see its folder (deploy/k8s: a parser container in the gateway's pod).
INGEST_PARSE_QUEUE = env_str("INGEST_PARSE_QUEUE", "")
INGEST_PARSER = env_str("INGEST_PARSER", "columnar")
if INGEST_PARSER not in ("columnar", "rows"):
    raise ImproperlyConfigured(f"INGEST_PARSER={INGEST_PARSER!r}: expected columnar or rows")
BLOCK_WINDOW_SECONDS = env_int("BLOCK_WINDOW_SECONDS", 3600, minimum=60)
# Storage tiers, one block: "name:resolution:retention,...". `raw` keeps every sample;
# the others keep per-bucket min/max/sum/count/last at their resolution. Retention is
# counted back from each GPU's own newest sample (docs/STORAGE.md, "Time policy"), so
# loading an old file keeps it and one far-future sample cannot age other GPUs' data.
STORAGE_TIERS = env_tiers("STORAGE_TIERS", "raw:0:2d,5m:5m:7d,1h:1h:30d")
# Each run rewrites the rollup blocks of touched windows: every revision stays in etcd's
# history until auto-compaction, so hourly keeps that history small (docs/CAPACITY.md).
COMPACTION_INTERVAL = env_duration("COMPACTION_INTERVAL", 3600.0)
ETCD_DEFRAG_INTERVAL = env_duration("ETCD_DEFRAG_INTERVAL", 86400.0)
JOB_RETENTION = env_duration("JOB_RETENTION", 7 * 86400.0)
# A job being parsed saves its counts at least this often; one whose document was not
# saved for INGEST_JOB_STALE (its parsing process died) is shown as failed.
INGEST_JOB_HEARTBEAT = env_duration("INGEST_JOB_HEARTBEAT", 30.0)
INGEST_JOB_STALE = env_duration("INGEST_JOB_STALE", 600.0)
CELERY_BEAT_SCHEDULE = {
    "compact-storage": {"task": "workers.compact", "schedule": COMPACTION_INTERVAL},
}
TELEMETRY_MAX_LIMIT = env_int("TELEMETRY_MAX_LIMIT", 10_000, minimum=1)
TELEMETRY_MAX_BUCKETS = env_int("TELEMETRY_MAX_BUCKETS", 100_000, minimum=1)
# The Prometheus API's series catalog, held by every gateway process: ~0.85 KB and ~10 us of
# build a series (docs/PROMETHEUS.md); past this many it answers 422 instead of growing
PROMETHEUS_MAX_SERIES = env_int("PROMETHEUS_MAX_SERIES", 500_000, minimum=1)
TELEMETRY_DEFAULT_LIMIT = env_int("TELEMETRY_DEFAULT_LIMIT", 1000, minimum=1)
# One telemetry response (JSON page or columns) stops at this many bytes and links the
# rest with `next`: a day of one GPU (86,400 samples, ~7 MB as rows) fits by default.
TELEMETRY_MAX_RESPONSE_BYTES = env_int(
    "TELEMETRY_MAX_RESPONSE_BYTES", 32 * 1024 * 1024, minimum=4096
)
# Decoded blocks kept per process (store/cache.py); 0 turns the cache off.
READ_CACHE_BYTES = env_int("READ_CACHE_BYTES", 128 * 1024 * 1024, minimum=0)
# How old the store's watched view (store/view.py) may be when a kept answer is served
# from it; 0: every read asks etcd. Answers kept per process (apps/read/answers.py).
READ_VIEW_LAG = env_duration("READ_VIEW_LAG", 1.0)
if 0 < READ_VIEW_LAG < 0.1:  # it is confirmed every READ_VIEW_LAG / 2: an etcd read each
    raise ImproperlyConfigured(f"READ_VIEW_LAG={READ_VIEW_LAG}s: 0 (off) or at least 100ms")
READ_ANSWER_CACHE_BYTES = env_int("READ_ANSWER_CACHE_BYTES", 64 * 1024 * 1024, minimum=0)
PORT = env_int("PORT", 8000, minimum=1)
# `manage.py stream` (the original streamer's settings): the file it replays, rows per
# batch, time between batches.
CSV_FILE = env_str("CSV_FILE", str(BASE_DIR / "samples" / "dcgm_sample.csv"))
BATCH_SIZE = env_int("BATCH_SIZE", 100, minimum=1)
STREAM_INTERVAL = env_duration("STREAM_INTERVAL", 1.0)

try:
    LOGGING = logging_config(env_str("LOG_FORMAT", "plain"), env_str("LOG_LEVEL", "INFO"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
