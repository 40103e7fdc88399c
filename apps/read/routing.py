"""WebSocket routes and the origin rule."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path

from apps.read.consumers import TelemetryConsumer

websocket_urlpatterns = [
    path("ws/telemetry/", TelemetryConsumer.as_asgi()),
    path("ws/gpus/<str:uuid>/", TelemetryConsumer.as_asgi()),
]


class BrowserOriginValidator(OriginValidator):
    """Checks the Origin of browsers against ALLOWED_HOSTS; lets non-browser clients in.

    Browsers always send Origin, so a foreign page cannot open the socket;
    programs (which send none and cannot be tricked by a page) are welcome.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        self.allowed_origins = list(settings.ALLOWED_HOSTS)  # read per request: settings may change
        return self.validate_origin(parsed_origin)
