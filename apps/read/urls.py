from django.urls import path

from apps.read import views

urlpatterns = [
    path("gpus", views.GpuListView.as_view(), name="gpu-list"),
    path("gpus/<str:uuid>", views.GpuDetailView.as_view(), name="gpu-detail"),
    path("gpus/<str:uuid>/latest", views.GpuLatestView.as_view(), name="gpu-latest"),
    path("gpus/<str:uuid>/telemetry", views.GpuTelemetryView.as_view(), name="gpu-telemetry"),
    path("hosts", views.HostListView.as_view(), name="host-list"),
    path("hosts/<str:hostname>/gpus", views.HostGpuListView.as_view(), name="host-gpus"),
    path("clusters", views.ClusterListView.as_view(), name="cluster-list"),
]
