"""Response shapes of the ingest API (they feed the OpenAPI description)."""

from __future__ import annotations

from rest_framework import serializers


class RowErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="line number in the file (1 is the header)")
    message = serializers.CharField()


class ChunkErrorSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="chunk number within the job")
    error = serializers.CharField()


class JobSerializer(serializers.Serializer):
    """An ingest job: counts while the file is read, then progress of the stored chunks.

    Counts appear once the job has read its input (a job still parsing has none yet).
    """

    id = serializers.CharField(help_text="starts with its creation time: ids sort by age")
    source = serializers.CharField(help_text="file name, or `request body`")
    cluster = serializers.CharField()
    format = serializers.CharField(help_text="`long` (DCGM) or `wide`")
    state = serializers.ChoiceField(
        choices=["running", "done", "failed"],
        help_text="running until every chunk is stored (done) or one can never be (failed)",
    )
    created_at = serializers.DateTimeField(help_text="RFC 3339, UTC")
    updated_at = serializers.DateTimeField(
        required=False, help_text="last save of the document while parsing (RFC 3339, UTC)"
    )
    error = serializers.CharField(required=False, help_text="why the job failed, else empty")
    rows_read = serializers.IntegerField(required=False)
    rows_accepted = serializers.IntegerField(required=False)
    rows_rejected = serializers.IntegerField(required=False)
    blank = serializers.IntegerField(
        required=False, help_text="DCGM's blank readings among the accepted rows (not stored)"
    )
    samples = serializers.IntegerField(required=False, help_text="values enqueued for storing")
    upload_seq = serializers.IntegerField(
        required=False,
        help_text="orders uploads: where two give the same sample, the later one wins",
    )
    errors = RowErrorSerializer(
        many=True, required=False, help_text="the first rejected rows (INGEST_MAX_ERRORS)"
    )
    chunks_expected = serializers.IntegerField(required=False)
    chunks_done = serializers.IntegerField(help_text="chunks the workers stored")
    chunks_failed = serializers.IntegerField(help_text="chunks that can never be stored")
    chunk_errors = ChunkErrorSerializer(many=True, required=False)
    parse_seconds = serializers.FloatField(required=False)


class AcceptedJobSerializer(JobSerializer):
    url = serializers.URLField(help_text="this job's progress: GET it until `state` is not running")
