"""ASGI entry point: `uvicorn telemetry_site.asgi:application`.

HTTP goes through the body guard (telemetry_site/guard.py: sizes, callers and pace
decided before a body is read), then the read lane (telemetry_site/lane.py: the hot
reads, unless READ_LANE is off), to Django; `/ws/...` to the Channels consumers unless
ENABLE_WEBSOCKET is off.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
django.setup(set_prefix=False)  # what get_asgi_application does, for our handler subclass

from celery.app.backends import by_url  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import get_resolver  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402
from kombu import Connection  # noqa: E402

from apps.accounts.channels_auth import TokenAuthMiddleware  # noqa: E402
from apps.read.routing import BrowserOriginValidator, websocket_urlpatterns  # noqa: E402
from observability.redact import redact_access_log  # noqa: E402
from telemetry_site.celery import app as celery_app  # noqa: E402
from telemetry_site.guard import BodyGuard, GuardedASGIHandler, sweep_bodies  # noqa: E402
from telemetry_site.lane import ReadLane  # noqa: E402

django_application = GuardedASGIHandler()


def _preload() -> None:
    """Modules loaded now rather than by the first request that needs them, which would hold
    the event loop (or the GIL) meanwhile and stall every request in flight. Imports only: no
    store or broker connection is made (fork safety). Measured with py-spy on a fresh
    gateway: the URL conf and every view module (~0.3 s, 40 % of its CPU during its first
    upload), the channel layer's backend (~40 ms at the first WebSocket client: the good
    client's p99 went 3.2-3.9x its baseline in bench/abuse.py's WebSocket attacks), the
    result backend and the broker transport (~150 ms at the first upload's send_task)."""
    get_resolver().url_patterns  # noqa: B018
    if settings.ENABLE_WEBSOCKET:
        import_string(settings.CHANNEL_LAYERS["default"]["BACKEND"])
    by_url(celery_app.conf.result_backend, celery_app.loader)
    Connection(celery_app.conf.broker_url)  # resolves its transport class; connects lazily


_preload()
sweep_bodies()  # what a killed gateway process left (files only: no connection is made)
redact_access_log()

# The lane inside the guard: a form POST it takes is bounded and paced as Django's would be.
lane = ReadLane(django_application, django_application) if settings.READ_LANE else None
http = BodyGuard(lane or django_application)
routes = {"http": http}
if settings.ENABLE_WEBSOCKET:
    routes["websocket"] = BrowserOriginValidator(
        AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
    )
application = ProtocolTypeRouter(routes)
