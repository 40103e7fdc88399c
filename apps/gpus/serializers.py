"""Request parameters and response shapes of the read API (also feed the OpenAPI schema)."""

from __future__ import annotations

from rest_framework import serializers

from apps.ingest.timeparse import parse_timestamp


class TimeField(serializers.Field):
    """RFC 3339 (or epoch seconds) in, epoch milliseconds out."""

    default_error_messages = {"invalid": "{error}"}

    def to_internal_value(self, data: str) -> int:
        try:
            return parse_timestamp(str(data))
        except ValueError as exc:
            self.fail("invalid", error=str(exc))

    def to_representation(self, value: int) -> int:
        return value


class GpuListParams(serializers.Serializer):
    cluster = serializers.CharField(required=False, max_length=200)
    host = serializers.CharField(required=False, max_length=200)
    model = serializers.CharField(required=False, max_length=200)


class TelemetryParams(serializers.Serializer):
    start_time = TimeField(required=False, help_text="inclusive, RFC 3339 or epoch seconds")
    end_time = TimeField(required=False, help_text="inclusive, RFC 3339 or epoch seconds")
    metric = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="repeat or comma-separate to keep only these metrics",
    )
    order = serializers.ChoiceField(choices=["asc", "desc"], default="asc")
    limit = serializers.IntegerField(required=False, min_value=1)
    cursor = serializers.CharField(required=False, max_length=2000)

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("start_time"), attrs.get("end_time")
        if start is not None and end is not None and start > end:
            raise serializers.ValidationError({"detail": "start_time is after end_time"})
        return attrs


class LatestValueSerializer(serializers.Serializer):
    timestamp = serializers.CharField()
    value = serializers.FloatField()


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


class TelemetrySerializer(serializers.Serializer):
    gpu = GpuSerializer()
    start_time = serializers.CharField(allow_null=True)
    end_time = serializers.CharField(allow_null=True)
    next = serializers.CharField(allow_null=True)
    results = SampleSerializer(many=True)
