"""ASGI entry point: `uvicorn telemetry_site.asgi:application`.

HTTP goes to Django; `/ws/...` to the Channels consumers unless ENABLE_WEBSOCKET is off.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from apps.accounts.channels_auth import TokenAuthMiddleware  # noqa: E402
from apps.read.routing import BrowserOriginValidator, websocket_urlpatterns  # noqa: E402

routes = {"http": django_application}
if settings.ENABLE_WEBSOCKET:
    routes["websocket"] = BrowserOriginValidator(
        AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
    )
application = ProtocolTypeRouter(routes)
