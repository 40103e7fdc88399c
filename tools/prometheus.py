"""A throwaway real Prometheus (Debian's `prometheus` + `promtool`) for oracles and baselines.

Stdlib only, like tools/services.py. The same samples we load into our store are written as
OpenMetrics text, turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`,
and served by a `prometheus` started on a free port over those blocks. Used by the PromQL
oracle tests and by the benchmarks that compare against Prometheus in the same run.

Sample shape everywhere here: ``(name, labels, [(t_seconds, value), ...])`` with the points of
one series in time order (promtool refuses anything else).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from tools import services

PROMETHEUS_START_DEADLINE_S = 30.0
APT_HINT = "apt-get install -y prometheus"

Series = tuple[str, dict[str, str], Sequence[tuple[float, float]]]


def ensure_binaries() -> None:
    """Raise RuntimeError naming the install command when prometheus or promtool is missing."""
    missing = [b for b in ("prometheus", "promtool") if shutil.which(b) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found on PATH; install with: {APT_HINT}")


def available() -> bool:
    return all(shutil.which(b) for b in ("prometheus", "promtool"))


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def write_openmetrics(series: Iterable[Series], path: Path) -> int:
    """Write ``series`` as OpenMetrics text that promtool accepts; return the sample count.

    One ``# TYPE name gauge`` per family, every series' samples contiguous, ``# EOF`` last.
    Series of one family must come together (promtool wants each family once).
    """
    count = 0
    seen_types: set[str] = set()
    with open(path, "w", encoding="utf-8") as out:
        for name, labels, points in series:
            if name not in seen_types:
                out.write(f"# TYPE {name} gauge\n")
                seen_types.add(name)
            rendered = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
            head = f"{name}{{{rendered}}}" if rendered else name
            for t, v in points:
                out.write(f"{head} {_number(v)} {t:.3f}\n")
                count += 1
        out.write("# EOF\n")
    return count


def create_blocks(openmetrics: Path, tsdb_dir: Path, max_block_duration: str = "24h") -> float:
    """Backfill ``openmetrics`` into ``tsdb_dir`` with promtool; return the seconds it took."""
    ensure_binaries()
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            f"--max-block-duration={max_block_duration}",
            str(openmetrics),
            str(tsdb_dir),
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return time.perf_counter() - started


def _ready(host: str, port: int) -> bool:
    return services.http_ok(host, port, "/-/ready")


def start_prometheus(
    data_dir: Path,
    tsdb_dir: Path | None = None,
    port: int | None = None,
    scrape_configs: list[dict] | None = None,
    remote_write: list[dict] | None = None,
    extra_args: Sequence[str] = (),
) -> services.Service:
    """Start ``prometheus`` on 127.0.0.1 over ``tsdb_dir`` (default ``data_dir/tsdb``).

    The configuration (JSON is valid YAML) has the given scrape and remote_write sections and
    nothing else. Returns once ``/-/ready`` answers 200. ``service.url`` is the base URL.
    """
    ensure_binaries()
    port = port or services.free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    tsdb_dir = tsdb_dir or data_dir / "tsdb"
    config: dict = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": scrape_configs or [],
    }
    if remote_write:
        config["remote_write"] = remote_write
    config_path = data_dir / "prometheus.yml"
    config_path.write_text(json.dumps(config))
    argv = [
        "prometheus",
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tsdb_dir}",
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address={services.LOCALHOST}:{port}",
        *extra_args,
    ]
    service = services._spawn(
        "prometheus",
        argv,
        data_dir=data_dir,
        log_path=data_dir / "prometheus.log",
        port=port,
        url=f"http://{services.LOCALHOST}:{port}",
        env=None,
    )
    services._await_ready(service, PROMETHEUS_START_DEADLINE_S, "GET /-/ready", _ready)
    return service


def remote_write_body(series: Iterable[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    """A remote write 1.0 body: the snappy-compressed (block format) protobuf WriteRequest of
    `series`, each (labels with `__name__`, [(timestamp ms, value), ...])."""
    import cramjam

    from apps.ingest.prompb import remote_pb2

    request = remote_pb2.WriteRequest()
    for labels, points in series:
        ts = request.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for t, v in points:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def remote_write(url: str, body: bytes, timeout: float = 60) -> None:
    """POST a `remote_write_body` to `url` (a receiver's /api/v1/write); raises on refusal."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        resp.read()


def api_get(base_url: str, path: str, params: dict[str, str | float], timeout: float = 60) -> dict:
    """GET ``base_url + path`` with ``params``; return the decoded JSON (errors included)."""
    url = f"{base_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
