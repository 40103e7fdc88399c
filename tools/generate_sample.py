"""Synthetic DCGM telemetry in the shape of the real dcgm-exporter CSV export.

Long format (default) matches the real export byte for byte in layout::

    timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw
    "2025-07-18T20:00:00Z","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-…",…,"97","DCGM_FI_DRIVER_VERSION=""535.129.03"",…"

* header unquoted, every data field double-quoted, LF line endings;
* ``labels_raw`` holds the Prometheus labels with their quotes doubled (CSV escaping);
* rows ordered by timestamp, then metric (in the export's order), then host, then GPU.

Wide format is one unquoted row per GPU and timestamp (see ``WIDE_HEADER``).

Output depends only on the arguments: the same ``seed`` gives the same bytes, also
for ``.gz`` output (the gzip header carries no mtime or file name). GPU uuids depend
only on ``seed``, host name and GPU index, so adding samples keeps them stable.

Usage::

    python -m tools.generate_sample --hosts 4 --gpus-per-host 8 --samples 30 --seed 1 \\
        --output samples/dcgm_sample.csv
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

LONG_HEADER = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,"
    "container,pod,namespace,value,labels_raw"
)
WIDE_HEADER = (
    "timestamp,gpu_id,hostname,uuid,device,modelname,gpu_utilization,memory_utilization,"
    "memory_used_mb,memory_free_mb,temperature,power_draw,sm_clock_mhz,memory_clock_mhz"
)
# The ten metrics of the real export, in the order it writes them per timestamp.
METRICS: tuple[str, ...] = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
)
MODEL_NAME = "NVIDIA H100 80GB HBM3"
DRIVER_VERSION = "535.129.03"
EXPORTER_PORT = 9400
JOB = "dgx_dcgm_exporter"
DEFAULT_START = "2025-07-18T20:00:00Z"
DEFAULT_PREFIX = "demo-node"

# H100 80GB as DCGM reports it: FB_USED + FB_FREE is constant (the rest is reserved).
FB_TOTAL_MIB = 81007
MEM_CLOCK_MHZ = 2619
SM_CLOCK_IDLE, SM_CLOCK_BUSY, SM_CLOCK_CAPPED = 345, 1980, 1965
# Per-sample chance that a GPU's job starts / ends; gives idle and busy stretches.
P_START, P_END = 0.10, 0.05


@dataclass(frozen=True)
class Gpu:
    """Static identity of one GPU."""

    host: str
    index: int
    uuid: str

    @property
    def device(self) -> str:
        return f"nvidia{self.index}"


@dataclass
class GpuState:
    """Slowly varying state; one ``Sample`` is drawn from it per timestamp."""

    busy: bool
    temp: float
    fb_used: int


@dataclass(frozen=True)
class Sample:
    """One GPU's readings at one timestamp, already formatted as CSV values."""

    util: str
    mem_copy: str
    power: str
    temp: str
    fb_used: str
    fb_free: str
    sm_clock: str

    def metric_values(self) -> tuple[str, ...]:
        """Values in ``METRICS`` order."""
        return (
            self.util,
            self.mem_copy,
            self.power,
            self.temp,
            self.fb_used,
            self.fb_free,
            "0",  # DEC_UTIL: the real export is all zeros (no video decode on DGX nodes)
            "0",  # ENC_UTIL: likewise
            self.sm_clock,
            str(MEM_CLOCK_MHZ),
        )


# --- identity ----------------------------------------------------------------------


def hostnames(hosts: int, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """``prefix-01`` … with at least two digits, wider when needed."""
    width = max(2, len(str(hosts)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, hosts + 1)]


def gpu_uuid(seed: int, host: str, index: int) -> str:
    """Random-looking but reproducible ``GPU-8-4-4-4-12`` hex uuid."""
    # A string seed is hashed (SHA-512) by random.Random, stable across runs/versions.
    h = f"{random.Random(f'{seed}/{host}/{index}').getrandbits(128):032x}"
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def make_gpus(seed: int, hosts: int, gpus_per_host: int, prefix: str) -> list[Gpu]:
    """GPUs in output order: host, then index."""
    return [
        Gpu(host, i, gpu_uuid(seed, host, i))
        for host in hostnames(hosts, prefix)
        for i in range(gpus_per_host)
    ]


# --- values ------------------------------------------------------------------------


def initial_state(rng: random.Random) -> GpuState:
    """Most GPUs of a training cluster are busy; busy ones hold most of their HBM."""
    if rng.random() < 0.6:
        return GpuState(busy=True, temp=rng.uniform(55, 70), fb_used=rng.randint(60_000, 77_413))
    return GpuState(busy=False, temp=rng.uniform(27, 35), fb_used=rng.randint(0, 3000))


def step(state: GpuState, rng: random.Random) -> Sample:
    """Advance ``state`` by one interval and return that interval's readings.

    Ranges follow the real export: utilisation 0-100, copy utilisation up to ~80,
    power ~67-690 W with 3 decimals, temperature 26-80 C, SM clock 345 idle / 1980
    busy (1965 when power-capped).
    """
    if state.busy and rng.random() < P_END:
        state.busy = False
    elif not state.busy and rng.random() < P_START:
        state.busy = True
        state.fb_used = rng.randint(60_000, 77_413)  # a new job allocates most of HBM
    if state.busy:
        util, mem_copy = rng.randint(85, 100), rng.randint(20, 80)
        power = rng.uniform(250.0, 690.0)
        target = 55 + 25 * (power - 250) / 440  # hotter when drawing more
        sm_clock = SM_CLOCK_CAPPED if power > 660 else SM_CLOCK_BUSY
    else:
        util = rng.choice((0, 0, 0, 0, 0, 0, 0, 1, 2, 3))
        mem_copy = 0
        power = rng.uniform(66.7, 130.0)
        target = 30.0
        sm_clock = SM_CLOCK_IDLE
        if state.fb_used > 0 and rng.random() < 0.3:
            state.fb_used = rng.randint(0, 3000)  # idle GPUs sometimes keep their memory
    # Temperature lags load: move part of the way to the target each interval.
    state.temp += (target - state.temp) * 0.3 + rng.uniform(-1.0, 1.0)
    state.temp = min(max(state.temp, 26.0), 80.0)
    fb_used = max(state.fb_used, 4)
    return Sample(
        util=str(util),
        mem_copy=str(mem_copy),
        power=_power(power),
        temp=str(round(state.temp)),
        fb_used=str(fb_used),
        fb_free=str(FB_TOTAL_MIB - fb_used),
        sm_clock=str(sm_clock),
    )


def _power(watts: float) -> str:
    """3 decimals with trailing zeros dropped, as the exporter prints (``117.77``)."""
    return f"{watts:.3f}".rstrip("0").rstrip(".")


# --- timestamps --------------------------------------------------------------------


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with ``Z`` or an offset; return it in UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp needs a time zone (Z or +HH:MM): {text!r}")
    return parsed.astimezone(UTC)


def format_rfc3339(ts: datetime) -> str:
    """``2025-07-18T20:42:34Z``; a fraction is added only when non-zero."""
    base = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        base += f".{ts.microsecond:06d}".rstrip("0")
    return base + "Z"


def timestamps(start: datetime, samples: int, interval_s: float) -> Iterator[str]:
    # Multiply rather than accumulate, so fractional intervals do not drift.
    step_us = round(interval_s * 1_000_000)
    for i in range(samples):
        yield format_rfc3339(start + timedelta(microseconds=i * step_us))


# --- rows --------------------------------------------------------------------------


def labels_raw(gpu: Gpu, metric: str) -> str:
    """Prometheus labels as the export stores them, quotes already doubled for CSV."""
    labels = (
        ("DCGM_FI_DRIVER_VERSION", DRIVER_VERSION),
        ("Hostname", gpu.host),
        ("UUID", gpu.uuid),
        ("__name__", metric),
        ("device", gpu.device),
        ("gpu", str(gpu.index)),
        ("instance", f"{gpu.host}:{EXPORTER_PORT}"),
        ("job", JOB),
        ("modelName", MODEL_NAME),
    )
    return ",".join(f'{k}=""{v}""' for k, v in labels)


def _long_affixes(gpus: Sequence[Gpu]) -> list[tuple[str, str]]:
    """Per (metric, gpu), the constant text around the value, in output order.

    A row is then ``'"' + ts + prefix + value + suffix``: the per-row cost is a
    few concatenations, which keeps 1M rows to a few seconds.
    """
    affixes = []
    for metric in METRICS:
        for g in gpus:
            prefix = (
                f'","{metric}","{g.index}","{g.device}","{g.uuid}","{MODEL_NAME}",'
                f'"{g.host}","","","","'
            )
            affixes.append((prefix, f'","{labels_raw(g, metric)}"'))
    return affixes


def _long_batch(ts: str, samples: Sequence[Sample], affixes: Sequence[tuple[str, str]]) -> str:
    """All rows of one timestamp: metric-major, then host/GPU (``samples`` order)."""
    columns = [s.metric_values() for s in samples]
    n = len(samples)
    head = '"' + ts
    return "".join(
        f"{head}{prefix}{columns[i % n][i // n]}{suffix}\n"
        for i, (prefix, suffix) in enumerate(affixes)
    )


def _wide_batch(ts: str, samples: Sequence[Sample], gpus: Sequence[Gpu]) -> str:
    return "".join(
        f"{ts},{g.index},{g.host},{g.uuid},{g.device},{MODEL_NAME},{s.util},{s.mem_copy},"
        f"{s.fb_used},{s.fb_free},{s.temp},{s.power},{s.sm_clock},{MEM_CLOCK_MHZ}\n"
        for g, s in zip(gpus, samples, strict=True)
    )


def generate_batches(
    *,
    hosts: int = 4,
    gpus_per_host: int = 8,
    samples: int = 30,
    interval_seconds: float = 10.0,
    start: str | datetime = DEFAULT_START,
    cluster_prefix: str = DEFAULT_PREFIX,
    seed: int = 1,
    fmt: str = "long",
) -> Iterator[str]:
    """Yield the CSV as text chunks: the header line, then one chunk per timestamp.

    Every chunk ends with ``\\n``; concatenated they are the exact file content.
    """
    if fmt not in ("long", "wide"):
        raise ValueError(f"fmt must be 'long' or 'wide', not {fmt!r}")
    for name, value in (("hosts", hosts), ("gpus_per_host", gpus_per_host)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1")
    if samples < 0 or interval_seconds <= 0:
        raise ValueError("samples must be >= 0 and interval_seconds > 0")
    start_dt = parse_rfc3339(start) if isinstance(start, str) else start.astimezone(UTC)
    gpus = make_gpus(seed, hosts, gpus_per_host, cluster_prefix)
    rng = random.Random(seed)
    states = [initial_state(rng) for _ in gpus]
    affixes = _long_affixes(gpus) if fmt == "long" else []

    yield (LONG_HEADER if fmt == "long" else WIDE_HEADER) + "\n"
    for ts in timestamps(start_dt, samples, interval_seconds):
        batch = [step(state, rng) for state in states]
        yield _long_batch(ts, batch, affixes) if fmt == "long" else _wide_batch(ts, batch, gpus)


def generate(**kwargs: object) -> Iterator[str]:
    """Yield the CSV one line at a time, header first, WITHOUT trailing newline.

    Takes the keyword arguments of ``generate_batches``. ``"\\n".join(lines) + "\\n"``
    equals what ``write`` puts in a file.
    """
    for chunk in generate_batches(**kwargs):  # type: ignore[arg-type]
        yield from chunk.splitlines()


def write(output: Path | None, **kwargs: object) -> int:
    """Write the CSV to ``output`` (gzip if it ends in ``.gz``) or stdout if None.

    Returns the number of data rows written.
    """
    chunks = generate_batches(**kwargs)  # type: ignore[arg-type]
    if output is None:
        return _write_chunks(sys.stdout, chunks)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".gz":
        with open(output, "wb") as raw:
            # mtime=0 and no file name in the header: same seed, same bytes.
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
            with gz, io.TextIOWrapper(gz, encoding="utf-8", newline="") as text:
                return _write_chunks(text, chunks)
    with open(output, "w", encoding="utf-8", newline="") as text:
        return _write_chunks(text, chunks)


def _write_chunks(out: TextIO, chunks: Iterator[str]) -> int:
    rows = -1  # the header is not a row
    for chunk in chunks:
        out.write(chunk)
        rows += chunk.count("\n")
    return rows


# --- CLI ---------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _rfc3339(text: str) -> datetime:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.generate_sample",
        description="Write synthetic DCGM telemetry CSV shaped like the real export.",
    )
    p.add_argument("--hosts", type=int, default=4, help="number of hosts (default 4)")
    p.add_argument("--gpus-per-host", type=int, default=8, help="GPUs per host (default 8)")
    p.add_argument("--samples", type=int, default=30, help="timestamps per GPU (default 30)")
    p.add_argument("--interval-seconds", type=_positive_float, default=10.0, help="default 10")
    p.add_argument("--start", type=_rfc3339, default=DEFAULT_START, help=f"default {DEFAULT_START}")
    p.add_argument("--cluster-prefix", default=DEFAULT_PREFIX, help="hostname prefix")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--format", choices=("long", "wide"), default="long", dest="fmt")
    p.add_argument("--output", type=Path, default=None, help="file (.gz => gzip); default stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kwargs = vars(args)
    output = kwargs.pop("output")
    try:
        rows = write(output, **kwargs)
    except BrokenPipeError:
        # e.g. `... | head`: not an error. Point stdout at devnull so the interpreter's
        # final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if output is not None:
        print(f"wrote {rows} rows to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
