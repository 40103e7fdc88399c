"""The GraphQL schema of the read side (docs/GRAPHQL.md): thin resolvers over apps.read.queries.

Answers are the REST answers in GraphQL's shape: the same query functions produce them
and the REST serializers check the arguments, so both APIs accept and refuse the same
input. An error names its argument (message `"<argument>: ..."`, `extensions.argument`).

etcd reads per request: `gpus` two range reads whatever the GPU count (records and every
GPU's latest values, which `latest` then uses: no read per GPU); `gpu` three; `clusters`
and `hosts` one; each `telemetry` field two plus the blocks of its page.
"""

from __future__ import annotations

from typing import Any

import graphene
from django.conf import settings
from graphene import relay
from graphene.types.generic import GenericScalar
from graphql import GraphQLError
from graphql_relay import cursor_to_offset, offset_to_cursor

from apps.read import queries
from apps.read.graphql_guards import Page, check_first
from apps.read.serializers import GpuListParams, TelemetryParams
from store.errors import NotFound
from store.rollup import AGGREGATES
from timeparse.timestamps import parse_timestamp

GPU_PAGE_MAX = 1000

# TelemetryParams' field -> the GraphQL argument it comes from
_ARGUMENT_OF = {
    "start_time": "start",
    "end_time": "end",
    "metric": "metrics",
    "order": "order",
    "limit": "first",
    "cursor": "after",
    "step": "step",
    "agg": "agg",
}
_CHOICES = {"order": ("asc", "desc"), "agg": AGGREGATES}


def page_limits() -> dict[str, Page]:
    """Default and maximum `first` of each connection field, read from settings now."""
    return {
        "Query.gpus": Page(settings.REST_FRAMEWORK["PAGE_SIZE"], GPU_PAGE_MAX, "GPU_PAGE_MAX"),
        "GPU.telemetry": Page(
            settings.TELEMETRY_DEFAULT_LIMIT, settings.TELEMETRY_MAX_LIMIT, "TELEMETRY_MAX_LIMIT"
        ),
    }


class ArgumentError(GraphQLError):
    """A bad argument: the message starts with its name, `extensions.argument` holds it."""

    def __init__(self, argument: str, message: str, code: str = "BAD_ARGUMENT") -> None:
        super().__init__(f"{argument}: {message}", extensions={"code": code, "argument": argument})


def _first(coordinate: str, value: int | None) -> int:
    try:
        return check_first(value, page_limits()[coordinate])
    except ValueError as exc:
        raise ArgumentError("first", str(exc)) from None


def _checked(serializer: Any) -> dict[str, Any]:
    """The serializer's validated data; ArgumentError naming the first bad argument."""
    if serializer.is_valid():
        return serializer.validated_data
    field, detail = next(iter(serializer.errors.items()))
    argument = _ARGUMENT_OF.get(field, field)
    message = _first_message(detail)
    if argument in _CHOICES:
        message += f" (one of {', '.join(_CHOICES[argument])})"
    raise ArgumentError(argument, message)


def _first_message(detail: Any) -> str:
    while isinstance(detail, dict | list):
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail)


def _page_info(cursors: list[str], has_next: bool, after: str | None) -> relay.PageInfo:
    return relay.PageInfo(
        has_next_page=has_next,
        has_previous_page=after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


# Types -------------------------------------------------------------------------------
class Cluster(graphene.ObjectType):
    name = graphene.String(required=True)
    host_count = graphene.Int(required=True)
    gpu_count = graphene.Int(required=True)


class Host(graphene.ObjectType):
    hostname = graphene.String(required=True)
    cluster = graphene.String(required=True)
    gpu_count = graphene.Int(required=True)


class Sample(graphene.ObjectType):
    """One value of one metric at one time (a bucket's start and aggregate with `step`)."""

    timestamp = graphene.String(required=True, description="RFC 3339, UTC")
    metric_name = graphene.String(required=True, description="the DCGM field name")
    value = graphene.Float(required=True)


class TelemetryConnection(relay.Connection):
    """Samples ordered by time then metric; cursors are the REST API's telemetry cursors."""

    class Meta:
        node = Sample
        strict_types = True


class Placement(graphene.ObjectType):
    """Where a GPU was seen, from a sample time on."""

    cluster = graphene.String(required=True)
    host = graphene.String(required=True)
    since = graphene.String(required=True, description="RFC 3339, UTC")


class Workload(graphene.ObjectType):
    pod = graphene.String(required=True)
    namespace = graphene.String(required=True)
    container = graphene.String(required=True)
    start = graphene.String(required=True, description="first sample seen with it (RFC 3339)")
    end = graphene.String(required=True, description="last sample seen with it (RFC 3339)")


class GPU(graphene.ObjectType):
    uuid = graphene.String(required=True)
    gpu_index = graphene.Int()
    device = graphene.String(required=True)
    model = graphene.String(required=True)
    host = graphene.String(required=True)
    cluster = graphene.String(required=True)
    driver = graphene.String(required=True)
    labels = GenericScalar(required=True, description="label name -> value")
    first_seen = graphene.String(required=True)
    last_seen = graphene.String()
    parent = graphene.String(description="for a MIG instance: the uuid of its GPU")
    placements = graphene.List(
        graphene.NonNull(Placement),
        required=True,
        description="where the GPU was seen, oldest first (by sample time)",
    )
    instances = graphene.List(
        graphene.NonNull(graphene.String),
        required=True,
        description="uuids of the GPU's MIG instances",
    )
    latest = graphene.List(
        graphene.NonNull(Sample),
        required=True,
        metrics=graphene.List(graphene.NonNull(graphene.String), description="only these"),
        description="the newest value of each metric, by metric name",
    )
    telemetry = graphene.Field(
        TelemetryConnection,
        required=True,
        start=graphene.String(description="inclusive; RFC 3339 or epoch seconds"),
        end=graphene.String(description="inclusive; RFC 3339 or epoch seconds"),
        metrics=graphene.List(graphene.NonNull(graphene.String), description="only these"),
        order=graphene.String(description="asc (default) or desc"),
        step=graphene.String(description="one value per metric per bucket: 60s, 5m, 1h"),
        agg=graphene.String(description=f"with step: {', '.join(AGGREGATES)} (default avg)"),
        first=graphene.Int(description="samples per page; at most TELEMETRY_MAX_LIMIT"),
        after=graphene.String(description="pageInfo.endCursor of the previous page"),
    )

    workloads = graphene.List(
        graphene.NonNull(Workload),
        required=True,
        start=graphene.String(description="inclusive; RFC 3339 or epoch seconds"),
        end=graphene.String(description="inclusive; RFC 3339 or epoch seconds"),
        description="the workloads (pod, namespace, container) that ran in the window",
    )

    @staticmethod
    def resolve_workloads(gpu: dict, info: Any, **args: Any) -> list[dict]:
        given = {"start_time": args.get("start"), "end_time": args.get("end")}
        params = TelemetryParams(data={k: v for k, v in given.items() if v is not None})
        _checked(params)
        query = params.query(gpu["uuid"])
        return queries.workloads(gpu["uuid"], query.start, query.end)

    @staticmethod
    def resolve_instances(gpu: dict, info: Any) -> list[str]:
        """Read once per request for a list of GPUs (no read per GPU)."""
        if "instances" in gpu:
            return gpu["instances"]
        fleet = getattr(info.context, "_mig_instances", None)
        if fleet is None:
            fleet = queries.fleet_instances()
            info.context._mig_instances = fleet
        return fleet.get(gpu["uuid"], [])

    @staticmethod
    def resolve_latest(gpu: dict, info: Any, metrics: list[str] | None = None) -> list[dict]:
        wanted = set(metrics or ())
        return [
            {"metric_name": name, **value}
            for name, value in gpu["latest"].items()
            if not wanted or name in wanted
        ]

    @staticmethod
    def resolve_telemetry(gpu: dict, info: Any, first: int | None = None, **args: Any) -> Any:
        limit = _first("GPU.telemetry", first)
        given = {
            "start_time": args.get("start"),
            "end_time": args.get("end"),
            "metric": [m for m in args.get("metrics") or () if m] or None,
            "order": args.get("order"),
            "limit": limit,
            "cursor": args.get("after"),
            "step": args.get("step"),
            "agg": args.get("agg"),
        }
        params = TelemetryParams(data={k: v for k, v in given.items() if v is not None})
        _checked(params)
        try:
            page = queries.telemetry(params.query(gpu["uuid"]))
        except queries.TooManyPoints as exc:
            raise ArgumentError("step", str(exc)) from None
        cursors = [
            queries.encode_cursor(parse_timestamp(row["timestamp"]), row["metric_name"])
            for row in page["results"]
        ]
        return TelemetryConnection(
            edges=[
                TelemetryConnection.Edge(node=row, cursor=cursor)
                for row, cursor in zip(page["results"], cursors, strict=True)
            ],
            page_info=_page_info(cursors, page["next_cursor"] is not None, args.get("after")),
        )


class GPUConnection(relay.Connection):
    """GPUs sorted by cluster, host, uuid; offset cursors, like REST's limit/offset pages."""

    class Meta:
        node = GPU
        strict_types = True

    total_count = graphene.Int(required=True, description="GPUs matching the filters")


# Queries -----------------------------------------------------------------------------
class Query(graphene.ObjectType):
    clusters = graphene.List(graphene.NonNull(Cluster), required=True)
    hosts = graphene.List(graphene.NonNull(Host), required=True, cluster=graphene.String())
    gpus = graphene.Field(
        GPUConnection,
        required=True,
        cluster=graphene.String(),
        host=graphene.String(),
        model=graphene.String(),
        first=graphene.Int(
            description=f"GPUs per page (default API_PAGE_SIZE, at most {GPU_PAGE_MAX})"
        ),
        after=graphene.String(description="pageInfo.endCursor of the previous page"),
    )
    gpu = graphene.Field(GPU, uuid=graphene.String(required=True))

    @staticmethod
    def resolve_clusters(root: Any, info: Any) -> list[dict]:
        return queries.list_clusters()

    @staticmethod
    def resolve_hosts(root: Any, info: Any, cluster: str | None = None) -> list[dict]:
        return queries.list_hosts(cluster or None)

    @staticmethod
    def resolve_gpus(
        root: Any, info: Any, first: int | None = None, after: str | None = None, **filters: Any
    ) -> GPUConnection:
        size = _first("Query.gpus", first)
        start = 0 if after is None else _offset(after) + 1
        given = {k: v for k, v in filters.items() if v is not None}
        gpus = queries.list_gpus(**_checked(GpuListParams(data=given)))
        page = gpus[start : start + size]
        cursors = [offset_to_cursor(start + i) for i in range(len(page))]
        return GPUConnection(
            edges=[
                GPUConnection.Edge(node=gpu, cursor=cursor)
                for gpu, cursor in zip(page, cursors, strict=True)
            ],
            page_info=_page_info(cursors, start + size < len(gpus), after),
            total_count=len(gpus),
        )

    @staticmethod
    def resolve_gpu(root: Any, info: Any, uuid: str) -> dict:
        try:
            return queries.get_gpu(uuid, instances=False)  # GPU.instances reads them if asked
        except NotFound as exc:
            raise ArgumentError("uuid", str(exc), code="NOT_FOUND") from None


def _offset(cursor: str) -> int:
    offset = cursor_to_offset(cursor)
    if offset is None or offset < 0:
        raise ArgumentError("after", "cursor is not one this API returned")
    return offset


schema = graphene.Schema(query=Query, auto_camelcase=True)
