from django.urls import path

from apps.ingest import views

urlpatterns = [
    path("csv/upload", views.UploadView.as_view(), name="csv-upload"),
    path("ingest/jobs", views.JobListView.as_view(), name="ingest-job-list"),
    path("ingest/jobs/<str:job_id>", views.JobView.as_view(), name="ingest-job"),
]
