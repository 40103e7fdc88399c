"""Admin: the GPU inventory (view-only ORM mirror of etcd) and the ingest jobs (read from etcd).

Nothing here writes telemetry. Rows cannot be added, edited or deleted by hand: the
mirror would overwrite them, and etcd is the system of record. "Rebuild from etcd"
runs the same code as `manage.py sync_inventory`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from apps.read import inventory, queries
from apps.read.models import Gpu, IngestJob
from store import default_keys
from store.errors import NotFound, StoreError
from store.jobs import list_jobs
from store.write import latest_values
from timeparse.timestamps import format_timestamp

JOBS_SHOWN = 100


class _LiveChangeList(ChangeList):
    """Reads the current last-seen time of the GPUs on the page from etcd (one request)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        uuids = [gpu.uuid for gpu in self.result_list]
        try:
            latest = latest_values(default_keys(), uuids) if uuids else {}
        except StoreError as exc:
            messages.warning(request, f"etcd did not answer ({exc}): last seen is as of the sync")
            return
        for gpu in self.result_list:  # the queryset caches these objects for the template
            times = [ts for ts, _ in latest.get(gpu.uuid, {}).values()]
            gpu.live_last_seen = inventory.ms_to_datetime(max(times)) if times else None


class ReadOnlyAdmin(admin.ModelAdmin):
    """etcd is the record: the admin shows, it never adds, changes or deletes."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Gpu)
class GpuAdmin(ReadOnlyAdmin):
    list_display = (
        "uuid",
        "host",
        "cluster",
        "model",
        "index",
        "seen_last",
        "chart",
    )
    list_display_links = ("uuid",)
    search_fields = ("uuid", "host")
    list_filter = ("cluster", "model")
    list_per_page = 100
    fields = (
        ("uuid", "chart"),
        ("cluster", "host"),
        ("gpu_index", "device"),
        ("model", "driver"),
        ("seen_first", "seen_last"),
        "latest_values",
        "labels",
        "mirrored_at",
    )
    readonly_fields = ("chart", "seen_first", "seen_last", "latest_values")
    change_list_template = "admin/gpus/gpu/change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _LiveChangeList

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        """The row, with `live` (apps.read.queries.get_gpu) or `live_error` attached."""
        gpu = super().get_object(request, object_id, from_field)
        if gpu is not None:
            gpu.live, gpu.live_error = None, ""
            try:
                gpu.live = queries.get_gpu(gpu.uuid)
            except NotFound:
                gpu.live_error = "etcd has no such GPU any more: rebuild the inventory"
            except StoreError as exc:
                gpu.live_error = f"etcd did not answer: {exc}"
        return gpu

    @admin.display(description="#", ordering="gpu_index")
    def index(self, gpu: Gpu) -> Any:
        return "-" if gpu.gpu_index is None else gpu.gpu_index

    @admin.display(description="first seen", ordering="first_seen")
    def seen_first(self, gpu: Gpu) -> str:
        return _short_time(gpu.first_seen)

    @admin.display(description="last seen", ordering="last_seen")
    def seen_last(self, gpu: Gpu) -> str:
        live = getattr(gpu, "live", None)
        if live is not None:
            return _short_time(live["last_seen"])
        return _short_time(getattr(gpu, "live_last_seen", gpu.last_seen))

    @admin.display(description="chart")
    def chart(self, gpu: Gpu) -> str:
        return format_html('<a href="{}">chart</a>', gpu.get_absolute_url())

    @admin.display(description="latest values (from etcd)")
    def latest_values(self, gpu: Gpu) -> str:
        if getattr(gpu, "live_error", ""):
            return gpu.live_error
        latest = (getattr(gpu, "live", None) or {}).get("latest") or {}
        if not latest:
            return "no telemetry yet"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((name, _number(v["value"]), v["timestamp"]) for name, v in latest.items()),
        )
        return format_html('<table class="latest-values"><tbody>{}</tbody></table>', rows)

    def get_urls(self) -> list[Any]:
        sync = self.admin_site.admin_view(require_POST(self.sync_view))
        return [path("sync/", sync, name="gpus_gpu_sync"), *super().get_urls()]

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("gpus.view_gpu"):
            raise PermissionDenied
        try:
            counts = inventory.sync(default_keys())
        except StoreError as exc:
            messages.error(request, f"etcd did not answer, nothing changed: {exc}")
        else:
            messages.success(
                request,
                f"{counts['gpus']} GPU(s) in etcd: {counts['created']} added, "
                f"{counts['updated']} updated, {counts['deleted']} removed",
            )
        return HttpResponseRedirect(reverse("admin:gpus_gpu_changelist"))


def _short_time(value: datetime | str | None) -> str:
    """`2025-07-18 20:42:34` (UTC): one short line in a table, from a datetime or RFC 3339."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return value.replace("T", " ").removesuffix("Z")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@admin.register(IngestJob)
class IngestJobAdmin(ReadOnlyAdmin):
    """The newest ingest jobs, read from etcd on each visit; there is no table behind it."""

    def get_urls(self) -> list[Any]:
        # Only the list: the ORM views (change, history, delete) would query a table
        # that does not exist.
        view = self.admin_site.admin_view(self.changelist_view)
        return [path("", view, name="gpus_ingestjob_changelist")]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        jobs, error = [], ""
        try:
            jobs = [_with_created(job) for job in list_jobs(default_keys(), JOBS_SHOWN)]
        except StoreError as exc:
            error = f"etcd did not answer: {exc}"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Ingest jobs",
            "jobs": jobs,
            "error": error,
            "shown": JOBS_SHOWN,
        }
        return TemplateResponse(request, "admin/gpus/ingestjob/jobs.html", context)


def _with_created(job: dict[str, Any]) -> dict[str, Any]:
    created = job.get("created_at")
    return job | {"created": format_timestamp(created) if isinstance(created, int) else ""}
