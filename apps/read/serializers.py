"""Request parameters and response shapes of the read API (also feed the OpenAPI schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, empty

from apps.read.queries import CursorError, TelemetryQuery, decode_cursor
from store.keys import MAX_TS
from store.rollup import AGGREGATES
from timeparse.durations import parse_duration
from timeparse.timestamps import format_timestamp, parse_timestamp


@extend_schema_field(OpenApiTypes.STR)  # RFC 3339 or epoch seconds: not only date-time
class TimeField(serializers.Field):
    """RFC 3339 (or epoch seconds) in, epoch milliseconds out; 1970 to the store's last time."""

    default_error_messages = {
        "invalid": "{error}",
        "range": "{value!r} is after the latest time the store holds ({latest})",
    }

    def to_internal_value(self, data: str) -> int:
        try:
            ms = parse_timestamp(str(data))
        except ValueError as exc:
            self.fail("invalid", error=str(exc))
        if ms > MAX_TS:
            self.fail("range", value=str(data), latest=format_timestamp(MAX_TS))
        return ms

    def to_representation(self, value: int) -> int:
        return value


@extend_schema_field(
    {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["all"]}]}
)
class LimitField(serializers.Field):
    """A sample count from 1 to TELEMETRY_MAX_LIMIT, or `all` (None): bounded by bytes only."""

    default_error_messages = {
        "invalid": "a whole number from 1, or `all`",
        "max": "at most {limit}; follow `next` for more, or ask for `all`",
    }

    def to_internal_value(self, data: object) -> int | None:
        if str(data).strip().lower() == "all":
            return None
        try:
            value = int(str(data).strip())
        except ValueError:
            self.fail("invalid")
        if value < 1:
            self.fail("invalid")
        if value > settings.TELEMETRY_MAX_LIMIT:
            self.fail("max", limit=settings.TELEMETRY_MAX_LIMIT)
        return value

    def to_representation(self, value: int | None) -> int | str:
        return "all" if value is None else value


class FilterField(serializers.CharField):
    """A cluster or host filter: spaces around it are trimmed, nothing else. CharField's
    trim also drops tabs, newlines and the control characters Python counts as whitespace
    (\\x1c-\\x1f), so `\\x1fprod` filtered as `prod` where the schema refuses it; kept, the
    store's key check refuses them (400) as it does anywhere else in a filter."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        return str(data).strip(" ")


class GpuListParams(serializers.Serializer):
    cluster = FilterField(required=False, max_length=200)
    host = FilterField(required=False, max_length=200)
    # any text but NUL, as the schema says: a blank or whitespace model is a filter like any other
    model = serializers.CharField(
        required=False, max_length=200, allow_blank=True, trim_whitespace=False
    )


class TelemetryParams(serializers.Serializer):
    start_time = TimeField(required=False, help_text="inclusive, RFC 3339 or epoch seconds")
    end_time = TimeField(required=False, help_text="inclusive, RFC 3339 or epoch seconds")
    metric = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="repeat or comma-separate to keep only these metrics",
    )
    order = serializers.ChoiceField(choices=["asc", "desc"], default="asc")
    limit = LimitField(
        required=False,
        help_text="samples per page, at most TELEMETRY_MAX_LIMIT (default "
        "TELEMETRY_DEFAULT_LIMIT; `columns`: all), or `all`: as many as "
        "TELEMETRY_MAX_RESPONSE_BYTES allows",
    )
    cursor = serializers.CharField(
        required=False, max_length=2000, help_text="the `next` of the previous page"
    )
    step = serializers.CharField(
        required=False, max_length=20, help_text="downsample into buckets of this size: 60s, 5m, 1h"
    )
    agg = serializers.ChoiceField(
        choices=list(AGGREGATES), default="avg", help_text="aggregate of each bucket (with step)"
    )
    format = serializers.ChoiceField(
        choices=["json", "columns", "csv", "wide"],
        default="json",
        help_text="json pages of rows; columns: a timestamps array and one value array per "
        "metric; csv: the whole window as CSV; wide: CSV with a column per metric",
    )

    def validate_step(self, value: str) -> int:
        try:
            ms = int(parse_duration(value) * 1000)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        if ms < 1000:
            raise serializers.ValidationError("step must be at least 1s")
        return ms

    def validate_cursor(self, value: str) -> tuple[int, str]:
        try:
            return decode_cursor(value)
        except CursorError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("start_time"), attrs.get("end_time")
        if start is not None and end is not None and start > end:
            raise serializers.ValidationError(
                {"start_time": [f"start_time is after end_time ({format_timestamp(end)})"]}
            )
        return attrs

    def query(self, uuid: str) -> TelemetryQuery:
        """The validated parameters as a query of `uuid`'s samples."""
        return telemetry_query(uuid, self.validated_data)


def telemetry_query(uuid: str, data: Mapping[str, Any]) -> TelemetryQuery:
    """TelemetryParams' validated data as a query of `uuid`'s samples."""
    default_limit = None if data["format"] == "columns" else settings.TELEMETRY_DEFAULT_LIMIT
    return TelemetryQuery(
        uuid=uuid,
        start=data.get("start_time", 0),
        end=data.get("end_time", MAX_TS),
        metrics=tuple(data.get("metric", ())),
        descending=data["order"] == "desc",
        limit=data.get("limit", default_limit),
        after=data.get("cursor"),
        step_ms=data.get("step"),
        agg=data["agg"],
    )


_VALIDATORS: dict[type[serializers.Serializer], serializers.Serializer] = {}


def plainly_valid(
    kind: type[serializers.Serializer], data: Mapping[str, Any]
) -> dict[str, Any] | None:
    """`kind(data=data).validated_data`, or None whenever that would not plainly succeed.

    The read lane's parser (telemetry_site/lane.py): the same declared field instances,
    `validate_<field>` methods and `validate` as the serializer, run in DRF's order, but
    without building a serializer per request (DRF deep-copies every field for each one,
    ~0.5 ms of a small read). Stricter, never laxer: a parameter the serializer does not
    declare, or any failure, gives None, and the request goes to the view, whose
    serializer words the error. tests/api/test_plainly_valid.py holds the two equal.
    """
    fields = kind._declared_fields  # type: ignore[attr-defined]
    if not data.keys() <= fields.keys():
        return None
    instance = _VALIDATORS.get(kind) or _VALIDATORS.setdefault(kind, kind())
    out: dict[str, Any] = {}
    try:
        for name, field in fields.items():
            try:
                value = field.run_validation(data.get(name, empty))
            except SkipField:
                continue
            method = getattr(instance, f"validate_{name}", None)
            out[name] = method(value) if method is not None else value
        return instance.validate(out)
    except Exception:  # any doubt: the serializer decides, and words it
        return None


class LatestValueSerializer(serializers.Serializer):
    timestamp = serializers.CharField()
    value = serializers.FloatField()


class PlacementSerializer(serializers.Serializer):
    cluster = serializers.CharField()
    host = serializers.CharField()
    since = serializers.CharField(help_text="sample time from which the GPU was seen there")


class GpuSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    gpu_index = serializers.IntegerField(allow_null=True)
    device = serializers.CharField()
    model = serializers.CharField()
    host = serializers.CharField()
    cluster = serializers.CharField()
    driver = serializers.CharField()
    labels = serializers.DictField(child=serializers.CharField())
    first_seen = serializers.CharField()
    last_seen = serializers.CharField(allow_null=True)
    latest = serializers.DictField(child=LatestValueSerializer())
    parent = serializers.CharField(
        allow_null=True, help_text="for a MIG instance: the uuid of its GPU"
    )
    placements = PlacementSerializer(
        many=True, help_text="where the GPU was seen, oldest first (by sample time)"
    )
    instances = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="uuids of the GPU's MIG instances (one GPU's answer only)",
    )


class HostSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    cluster = serializers.CharField()
    gpu_count = serializers.IntegerField()


class ClusterSerializer(serializers.Serializer):
    name = serializers.CharField()
    host_count = serializers.IntegerField()
    gpu_count = serializers.IntegerField()


class SampleSerializer(serializers.Serializer):
    timestamp = serializers.CharField()
    metric_name = serializers.CharField()
    value = serializers.FloatField()


class WorkloadSerializer(serializers.Serializer):
    pod = serializers.CharField()
    namespace = serializers.CharField()
    container = serializers.CharField()
    start = serializers.CharField(help_text="first sample seen with this workload (RFC 3339)")
    end = serializers.CharField(help_text="last sample seen with this workload (RFC 3339)")


class TelemetrySerializer(serializers.Serializer):
    gpu = GpuSerializer()
    workloads = WorkloadSerializer(many=True, help_text="workloads that ran in the window")
    start_time = serializers.CharField(allow_null=True)
    end_time = serializers.CharField(allow_null=True)
    next = serializers.CharField(allow_null=True)
    results = SampleSerializer(many=True)


class TelemetryColumnsSerializer(serializers.Serializer):
    """`format=columns`: the samples as a table, for charts and programs."""

    gpu = GpuSerializer()
    workloads = WorkloadSerializer(many=True, help_text="workloads that ran in the window")
    start_time = serializers.CharField(allow_null=True)
    end_time = serializers.CharField(allow_null=True)
    next = serializers.CharField(allow_null=True)
    timestamps = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="distinct sample times, epoch milliseconds UTC, in the asked order",
    )
    series = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="per metric, its value at each of `timestamps` (null where it has none)",
    )


class LatestSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    last_seen = serializers.CharField(allow_null=True)
    latest = serializers.DictField(child=LatestValueSerializer())
