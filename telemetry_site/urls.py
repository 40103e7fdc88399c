from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView

from apps.accounts.views import admin_login, admin_password_change
from apps.api import errors
from apps.api.schema_view import SchemaView
from apps.ingest.views import RemoteWriteView
from apps.read import dashboard
from apps.read.graphql_view import TelemetryGraphQLView
from observability.health import check_broker, health_view, metrics_view, ready_view
from store import kv
from store.upkeep import upkeep_metric_lines

# The admin's GPU and job tables need the page's width at 1280 px more than the app list.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("api/v1/", include("apps.ingest.urls")),
    path("api/v1/", include("apps.read.urls")),
    # remote write is ingest; the rest of the Prometheus API is a read adapter
    path("prometheus/api/v1/write", RemoteWriteView.as_view(), name="prom-remote-write"),
    path("prometheus/api/v1/", include("apps.read.prometheus.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    # last of /api/: any other path is a JSON 404, never Django's HTML page
    re_path(r"^api/", errors.not_found, name="api-not-found"),
    path("swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    path("health", health_view, name="health"),
    path("metrics", metrics_view, {"more": [upkeep_metric_lines]}, name="metrics"),
    path("ready", ready_view, {"checks": {"etcd": kv.check, "broker": check_broker}}, name="ready"),
    # before the admin's own: its login checks passwords (~0.5 s of CPU each), paced here
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/password_change/", admin_password_change, name="admin-password-change"),
    path("admin/", admin.site.urls),
    path("favicon.ico", dashboard.favicon, name="favicon"),
    path("", dashboard.fleet, name="dashboard"),
    path("gpus/<str:uuid>/", dashboard.gpu_page, name="dashboard-gpu"),
]

if settings.ENABLE_GRAPHQL:  # off: no route, so /graphql answers 404
    urlpatterns.append(path("graphql", TelemetryGraphQLView.as_view(graphiql=True), name="graphql"))
