from django.urls import path

from apps.read.prometheus import views

urlpatterns = [
    path("query", views.query, name="prom-query"),
    path("query_range", views.query_range, name="prom-query-range"),
    path("series", views.series, name="prom-series"),
    path("labels", views.labels, name="prom-labels"),
    path("label/<str:name>/values", views.label_values, name="prom-label-values"),
    path("metadata", views.metadata, name="prom-metadata"),
    path("status/buildinfo", views.buildinfo, name="prom-buildinfo"),
]
