"""The admin's GPU inventory: ORM rows mirrored from etcd, which stays the system of record.

Rows are written by workers when a chunk registers or changes a GPU
(`apps.read.inventory.mirror`) and rebuilt from etcd by `manage.py sync_inventory`.
Nothing reads telemetry from here; the admin uses these rows to list, search and filter.
"""

from __future__ import annotations

from django.db import models
from django.urls import reverse


class Gpu(models.Model):
    uuid = models.CharField("UUID", max_length=200, unique=True)
    cluster = models.CharField(max_length=200, db_index=True)
    host = models.CharField(max_length=200, db_index=True)
    gpu_index = models.IntegerField("index", null=True, blank=True)
    device = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True, db_index=True)
    driver = models.CharField(max_length=200, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    # As of the last `sync_inventory`; the admin list shows etcd's current value when it can.
    last_seen = models.DateTimeField(null=True, blank=True)
    mirrored_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "GPU"
        verbose_name_plural = "GPUs"
        ordering = ("cluster", "host", "gpu_index", "uuid")

    def __str__(self) -> str:
        return f"{self.uuid} ({self.host})"

    def get_absolute_url(self) -> str:
        """The GPU's page on the dashboard (its charts)."""
        return reverse("dashboard-gpu", args=[self.uuid])


class IngestJob(models.Model):
    """No table: a handle so that the admin lists ingest jobs, which live in etcd only.

    The admin's job pages read `{root}/jobs/` through store.jobs.list_jobs.
    """

    class Meta:
        managed = False
        verbose_name = "ingest job"
        default_permissions = ("view",)
