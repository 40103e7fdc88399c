"""Prometheus text exposition (what dcgm-exporter serves on :9400/metrics) to rows and facts.

The text format, version 0.0.4: one sample per line,

    name{label="value",...} value [timestamp_ms]

with `# HELP name text` and `# TYPE name counter|gauge|...` lines, other `#`
lines being comments. Label values escape `\\`, `"` and newline as `\\\\`, `\\"`
and `\\n`; values are Go floats (`NaN`, `+Inf`, `-Inf` included); the optional
timestamp is integer milliseconds since the epoch.

What becomes telemetry: series whose name starts with `DCGM_` and that carry a
GPU uuid label (`UUID`, or `uuid` with the exporter's old label names).
Counters, gauges and untyped series alike are kept, under their own name.
Other series (go_*, process_*, promhttp_*, and DCGM series of NVSwitches or
CPUs, which have no GPU uuid) are counted as ignored. Samples whose value is
NaN or infinite are skipped and counted (the store keeps finite numbers only),
and so are lines that are not valid exposition text; both count as rejected
rows of the job, with their line numbers.

A MIG instance is a GPU record of its own. dcgm-exporter labels its samples
with the parent GPU's `UUID` plus `GPU_I_ID` and `GPU_I_PROFILE`; its uuid is
then `MIG-<parent uuid>-<GPU_I_ID>` (for example `MIG-GPU-5fd4...-3`), unless
the `UUID` label already holds a MIG uuid (`MIG-...`), which is kept as it
is. The record keeps every label, so the parent (`UUID`) and the profile stay
visible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from apps.ingest.formats import MAX_METRIC_NAME, gpu_uuid
from apps.ingest.parsing import Row, RowError
from store.errors import InvalidSegment
from store.keys import MAX_TS, check_segment
from store.workloads import WORKLOAD_LABELS, workload_of

__all__ = ["Exposition", "LineError", "Sample", "gpu_uuid", "parse_exposition", "parse_sample"]

TYPES = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped"}
    | {"unknown", "info", "stateset", "gaugehistogram"}  # OpenMetrics
)
_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    # possessive (`*+`, `++`): linear time on any line, however broken
    r"[ \t]*(?:\{(?P<labels>(?:[^\"}]++|\"(?:[^\"\\\n]++|\\.)*+\")*+)\})?"
    r"[ \t]+(?P<value>[^ \t]+)(?:[ \t]+(?P<ts>[^ \t]+))?[ \t]*"
)
_PAIR = re.compile(r"[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*\"((?:[^\"\\\n]|\\.)*)\"[ \t]*")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf(?:inity)?|nan))")
_TIMESTAMP = re.compile(r"-?\d+")
_META = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]+(.*))?")


class LineError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    ts: int | None


@dataclass
class Exposition:
    """The telemetry in one scrape: rows (one per GPU and time), facts per GPU, counts."""

    rows: list[Row] = field(default_factory=list)
    facts: dict[str, dict] = field(default_factory=dict)
    samples: int = 0  # DCGM samples kept
    nonfinite: int = 0  # DCGM samples skipped: NaN or infinite
    bad_lines: int = 0  # lines that are not exposition text
    ignored: int = 0  # samples of other series, or without a GPU uuid
    errors: list[RowError] = field(default_factory=list)
    help: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    workloads: dict[tuple[str, int], dict] = field(default_factory=dict)  # (uuid, ts) -> labels

    @property
    def rejected(self) -> int:
        return self.nonfinite + self.bad_lines

    def facts_of(self, row: Row) -> dict:
        return self.facts[row.uuid]

    def workload_of(self, row: Row) -> dict:
        """pod/namespace/container of the row's samples (apps/ingest/workloads.py)."""
        return self.workloads.get((row.uuid, row.ts), {})


def parse_label_set(body: str) -> dict[str, str]:
    """`a="x",b="y"` (the inside of the braces; a trailing comma is allowed) to a dict.

    Strict, as the exposition format is: LineError on anything else (the CSV's lenient
    reader of `labels_raw` is apps/ingest/parsing.py::parse_labels_raw)."""
    labels: dict[str, str] = {}
    pos, end = 0, len(body)
    while pos < end:
        match = _PAIR.match(body, pos)
        if match is None:
            if not body[pos:].strip():
                break
            raise LineError(f"bad label at {body[pos : pos + 30]!r}")
        name, raw = match.groups()
        if name in labels:
            raise LineError(f"label {name} given twice")
        labels[name] = _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw
        pos = match.end()
        if pos < end:
            if body[pos] != ",":
                raise LineError(f"expected ',' between labels at {body[pos : pos + 30]!r}")
            pos += 1
    return labels


def _unescape(match: re.Match[str]) -> str:
    char = match[1]
    if char not in _ESCAPES:
        raise LineError(f"invalid escape \\{char} in a label value")
    return _ESCAPES[char]


def parse_sample(line: str, seen: dict[str, dict[str, str]] | None = None) -> Sample:
    """One sample line; LineError when it is not one.

    `seen` caches label sets by their text: an exporter repeats a GPU's labels
    on each of its metrics. The dicts returned are shared: do not change them.
    """
    match = _SAMPLE.fullmatch(line)
    if match is None:
        raise LineError(f"not a sample line: {line[:60]!r}")
    body = match["labels"]
    if not body:
        labels = {}
    elif seen is None:
        labels = parse_label_set(body)
    else:
        labels = seen.get(body)  # type: ignore[assignment]
        if labels is None:
            labels = seen[body] = parse_label_set(body)
    text = match["value"]
    if not _NUMBER.fullmatch(text):
        raise LineError(f"value {text[:40]!r} is not a number")
    ts = None
    if match["ts"] is not None:
        if not _TIMESTAMP.fullmatch(match["ts"]):
            raise LineError(f"timestamp {match['ts'][:40]!r} is not integer milliseconds")
        ts = int(match["ts"])
        if not 0 <= ts <= MAX_TS:
            raise LineError(f"timestamp {ts} is out of range")
    return Sample(match["name"], labels, float(text), ts)


class _Builder:
    """Turns samples into rows (grouped per GPU and time) and facts (first sample of a GPU)."""

    def __init__(
        self,
        out: Exposition,
        cluster: str,
        default_host: str,
        instance: str,
        limits: Limits | None = None,
    ) -> None:
        self.out = out
        self.cluster = cluster
        self.default_host = default_host
        self.instance = instance
        self.limits = limits or Limits()
        self.rows: dict[tuple[str, int], Row] = {}
        self.metrics: dict[str, set[str]] = {}  # uuid -> its distinct metric names

    def add(self, sample: Sample, scraped_at: int) -> None:
        labels = sample.labels
        parent = labels.get("UUID") or labels.get("uuid")
        if not sample.name.startswith("DCGM_") or not parent:
            self.out.ignored += 1
            return
        if not math.isfinite(sample.value):
            shown = "NaN" if math.isnan(sample.value) else f"{sample.value:+}".replace("inf", "Inf")
            raise _NonFinite(f"{sample.name}: value {shown} is not a finite number")
        _check_name(sample.name)
        ts = scraped_at if sample.ts is None else sample.ts
        self._check_ts(sample.name, ts)
        uuid = gpu_uuid(parent, labels.get("GPU_I_ID", ""))
        if uuid not in self.out.facts:
            self.out.facts[uuid] = self._facts(uuid, labels)
        self._count_metric(uuid, sample.name)
        host = self.out.facts[uuid]["host"]
        row = self.rows.get((uuid, ts))
        if row is None:
            row = self.rows[(uuid, ts)] = Row(uuid, host, ts, [], [])
            self.out.workloads[(uuid, ts)] = workload_of(labels)
        row.values.append((sample.name, sample.value))
        self.out.samples += 1

    def _check_ts(self, name: str, ts: int) -> None:
        # a timestamp no block key can hold would fail the worker's whole chunk
        if not 0 <= ts <= MAX_TS:
            raise LineError(f"{name}: timestamp {ts} is out of range (0 to {MAX_TS} ms)")
        latest = self.limits.latest_ms
        if latest is not None and ts > latest:
            raise LineError(
                f"{name}: timestamp {ts} is ahead of this server's clock by more than "
                "INGEST_MAX_FUTURE"
            )

    def _count_metric(self, uuid: str, name: str) -> None:
        names = self.metrics.setdefault(uuid, set())
        if name in names:
            return
        most = self.limits.max_metrics_per_gpu
        if most is not None and len(names) >= most:
            raise LineError(
                f"{name}: GPU {uuid[:60]} already has {most} distinct metrics, at most "
                f"{most} (INGEST_MAX_METRICS_PER_GPU)"
            )
        names.add(name)

    def _facts(self, uuid: str, labels: dict[str, str]) -> dict:
        try:
            check_segment(uuid, "uuid")
            host = check_segment(
                labels.get("Hostname") or labels.get("hostname") or self.default_host, "hostname"
            )
        except InvalidSegment as exc:
            raise LineError(str(exc)) from None
        # workload labels change while the GPU stays: they make periods, not facts
        kept = {k: v for k, v in labels.items() if k not in WORKLOAD_LABELS}
        if self.instance:
            kept.setdefault("instance", self.instance)
        index_text = labels.get("gpu", "")
        index = int(index_text) if index_text.isdigit() and len(index_text) <= 6 else None
        return {
            "uuid": uuid,
            "cluster": self.cluster,
            "host": host,
            "gpu_index": index,
            "device": labels.get("device") or (f"nvidia{index}" if index is not None else ""),
            "model": labels.get("modelName", ""),
            "driver": labels.get("DCGM_FI_DRIVER_VERSION", ""),
            "labels": kept,
        }


class _NonFinite(LineError):
    pass


@dataclass(frozen=True)
class Limits:
    """Bounds a sample must meet (None: unbounded); remote write passes its settings."""

    latest_ms: int | None = None  # newest timestamp accepted (now + INGEST_MAX_FUTURE)
    max_metrics_per_gpu: int | None = None  # INGEST_MAX_METRICS_PER_GPU


# Prometheus' metric name syntax, as the CSV path's length rule (formats.MAX_METRIC_NAME)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _check_name(name: str) -> None:
    if len(name) > MAX_METRIC_NAME:
        raise LineError(f"metric name {name[:40]!r}... is longer than {MAX_METRIC_NAME}")
    if not _METRIC_NAME.fullmatch(name):
        raise LineError(f"metric name {name[:60]!r} is not a valid Prometheus metric name")


def parse_exposition(
    text: str,
    *,
    cluster: str,
    scraped_at: int,
    default_host: str = "",
    instance: str = "",
    source: str = "",
    max_errors: int = 20,
) -> Exposition:
    """Every line of `text`; samples without a timestamp get `scraped_at` (epoch ms).

    `default_host` names the host when a GPU's samples carry no `Hostname`;
    `instance` (host:port scraped) is added to the labels as Prometheus would.
    Errors name their line (`source` prefixes the message). Never raises on bad
    input: bad lines are counted.
    """
    out = Exposition()
    builder = _Builder(out, cluster, default_host, instance)
    prefix = f"{source}: " if source else ""
    seen: dict[str, dict[str, str]] = {}
    # Lines end in "\n" only: splitlines() would also cut at characters such as
    # U+2028 that a label value may hold unescaped.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            if line.startswith("#"):
                _meta(out, line)
                continue
            builder.add(parse_sample(line, seen), scraped_at)
        except _NonFinite as exc:
            out.nonfinite += 1
            _error(out, number, prefix + str(exc), max_errors)
        except LineError as exc:
            out.bad_lines += 1
            _error(out, number, prefix + str(exc), max_errors)
    out.rows = list(builder.rows.values())
    return out


def from_samples(
    samples: Iterable[Sample],
    *,
    cluster: str,
    scraped_at: int,
    max_errors: int = 20,
    limits: Limits | None = None,
) -> Exposition:
    """Samples parsed elsewhere (remote write) to rows and facts, by the rules above.

    Errors are numbered by the sample's position (1-based) instead of a line. A
    sample out of `limits` (or with a bad name or timestamp) is rejected alone.
    """
    out = Exposition()
    builder = _Builder(out, cluster, "", "", limits)
    for number, sample in enumerate(samples, start=1):
        try:
            builder.add(sample, scraped_at)
        except _NonFinite as exc:
            out.nonfinite += 1
            _error(out, number, str(exc), max_errors)
        except LineError as exc:
            out.bad_lines += 1
            _error(out, number, str(exc), max_errors)
    out.rows = list(builder.rows.values())
    return out


def _meta(out: Exposition, line: str) -> None:
    words = line[1:].split(None, 1)
    if not words or words[0] not in ("HELP", "TYPE"):
        return  # a comment (or OpenMetrics' `# EOF`)
    match = _META.fullmatch(line)
    if match is None:
        raise LineError(f"malformed {line[2:6]} line: {line[:60]!r}")
    kind, name, rest = match.groups()
    if kind == "HELP":
        out.help[name] = _HELP_ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], rest or "")
        return
    if rest is None or rest.strip() not in TYPES:
        raise LineError(f"unknown metric type {rest!r} for {name}")
    out.types[name] = rest.strip()


_HELP_ESCAPE = re.compile(r"\\([\\n])")


def _error(out: Exposition, line: int, message: str, max_errors: int) -> None:
    if len(out.errors) < max_errors:
        out.errors.append(RowError(line, message))
