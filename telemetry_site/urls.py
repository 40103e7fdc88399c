from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.ingest.views import RemoteWriteView
from apps.read import dashboard
from apps.read.graphql_view import TelemetryGraphQLView
from observability.health import check_broker, health_view, metrics_view, ready_view
from store import kv

urlpatterns = [
    path("api/v1/", include("apps.ingest.urls")),
    path("api/v1/", include("apps.read.urls")),
    # remote write is ingest; the rest of the Prometheus API is a read adapter
    path("prometheus/api/v1/write", RemoteWriteView.as_view(), name="prom-remote-write"),
    path("prometheus/api/v1/", include("apps.read.prometheus.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    path("health", health_view, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("ready", ready_view, {"checks": {"etcd": kv.check, "broker": check_broker}}, name="ready"),
    path("admin/", admin.site.urls),
    path("", dashboard.fleet, name="dashboard"),
    path("gpus/<str:uuid>/", dashboard.gpu_page, name="dashboard-gpu"),
]

if settings.ENABLE_GRAPHQL:  # off: no route, so /graphql answers 404
    urlpatterns.append(path("graphql", TelemetryGraphQLView.as_view(graphiql=True), name="graphql"))
