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

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from apps.accounts.channels_auth import TokenAuthMiddleware  # noqa: E402
from apps.read.routing import BrowserOriginValidator, websocket_urlpatterns  # noqa: E402
from observability.redact import redact_access_log  # noqa: E402
from telemetry_site.guard import BodyGuard, GuardedASGIHandler  # noqa: E402
from telemetry_site.lane import ReadLane  # noqa: E402

django_application = GuardedASGIHandler()
# The URL conf, and with it every view module, loaded now rather than by the first
# request, which would wait ~0.3 s for it (measured: 40 % of a fresh gateway's CPU during
# its first upload). Imports only: no store or broker client is made (fork safety).
get_resolver().url_patterns  # noqa: B018
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
