"""The etcd key layout: every key the project uses is built here and nowhere else.

Layout under the root (default `/telemetry`), documented in docs/STORAGE.md:

    {root}/clusters/{cluster}/hosts/{host}/gpus/{uuid}   GPU record (JSON)
    {root}/gpus/{uuid}                                    locator: cluster and host (JSON)
    {root}/instances/{parent}/{uuid}                      MIG instance of a GPU (empty)
    {root}/latest/{uuid}                                  newest value per metric (JSON)
    {root}/blocks/{uuid}/{t_first:013d}-{t_last:013d}-{upload:016d}.{chunk:06d}-{digest}   block
    {root}/upload-seq                                     upload sequence counter (its revision)
    {root}/jobs/{job}                                     ingest job (JSON)
    {root}/chunks/{job}/{seq:06d}                         chunk marker (JSON)
    {root}/chunk-failures/{job}/{seq:06d}                 chunk that can never be stored (JSON)
    {root}/rollups/{tier}/{uuid}/{t_first:013d}-{t_last:013d}-{digest}   rollup block
    {root}/compaction/cursor, {root}/compaction/lock      compaction state
    {root}/compaction/rolled/{tier}                       closed rollup windows done up to
    {root}/compaction/layout/{tier}                       rollup window its blocks fit (ms)
    {root}/compaction/defragmented_at                     time of the last defragmentation
    {root}/compaction/report                              summary of the last upkeep run
    {root}/workloads/{uuid}/{day_ms:013d}                 workload periods of a GPU starting
                                                          that UTC day (JSON)
    {root}/workloads/{uuid}                               all of them, in stores written
                                                          before day keys (read, never written)

Times in block keys are zero-padded epoch milliseconds, so byte order is time
order and one range read finds the blocks of a window:

>>> k = Keys("/telemetry")
>>> k.block("GPU-1", 1_000, 2_000, "ab12")
'/telemetry/blocks/GPU-1/0000000001000-0000000002000-0000000000000000.000000-ab12'
>>> k.block("GPU-1", 999, 999, "x") < k.block("GPU-1", 1_000, 1_000, "x")
True

Every prefix used for a range read ends with `/`, so `GPU-1` never matches `GPU-10`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from store.errors import InvalidSegment

MAX_SEGMENT = 200
_TS_DIGITS = 13
MAX_TS = 10**_TS_DIGITS - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_segment(value: str, what: str = "segment") -> str:
    """Return `value` if it is safe as one key segment, else raise InvalidSegment naming `what`."""
    if not isinstance(value, str) or not value:
        raise InvalidSegment(f"{what} is empty")
    if len(value) > MAX_SEGMENT:
        raise InvalidSegment(f"{what} is longer than {MAX_SEGMENT} characters")
    if value in (".", ".."):
        raise InvalidSegment(f"{what} {value!r} is not allowed")
    if "/" in value:
        raise InvalidSegment(f"{what} {value!r} contains '/'")
    if _CONTROL.search(value):
        raise InvalidSegment(f"{what} {value!r} contains a control character")
    return value


def _ts(value: int) -> str:
    if not 0 <= value <= MAX_TS:
        raise InvalidSegment(f"timestamp {value} ms is outside 0..{MAX_TS}")
    return f"{value:0{_TS_DIGITS}d}"


def _span(prefix: str, start: int, end: int, window_ms: int) -> tuple[str, str]:
    """[range_start, range_end) of blocks under `prefix` that may overlap [start, end]."""
    low = max(0, start - window_ms)
    high = min(MAX_TS, max(end, 0) + 1)
    return prefix + _ts(low), prefix + _ts(high)


def window_span(prefix: str, first: int, last: int) -> tuple[str, str]:
    """[range_start, range_end) of blocks starting within [first, last]."""
    return prefix + _ts(first), prefix + _ts(min(MAX_TS, last + 1))


@dataclass(frozen=True, slots=True)
class BlockName:
    """A block key's name: its time range, its (upload, chunk) order and content digest.

    Blocks written before upload order existed have no order segment: (0, 0),
    older than any upload.

    >>> Keys.parse_block("/t/blocks/G/0000000001000-0000000002000-0000000000000007.000003-ab")
    BlockName(t_first=1000, t_last=2000, digest='ab', upload=7, chunk=3)
    >>> Keys.parse_block("/t/blocks/G/0000000001000-0000000002000-ab")
    BlockName(t_first=1000, t_last=2000, digest='ab', upload=0, chunk=0)
    """

    t_first: int
    t_last: int
    digest: str
    upload: int = 0
    chunk: int = 0


@dataclass(frozen=True)
class Keys:
    """Key builder for one root. Raises InvalidSegment on an unusable segment."""

    root: str

    def __post_init__(self) -> None:
        root = self.root.rstrip("/")
        if not root.startswith("/") or "//" in root or len(root) < 2:
            raise InvalidSegment(f"ETCD_PREFIX {self.root!r} must look like /name")
        object.__setattr__(self, "root", root)

    def all(self) -> str:
        return f"{self.root}/"

    # GPU registry -------------------------------------------------------------
    def records_prefix(self, cluster: str | None = None, host: str | None = None) -> str:
        if cluster is None:
            return f"{self.root}/clusters/"
        base = f"{self.root}/clusters/{check_segment(cluster, 'cluster')}/hosts/"
        if host is None:
            return base
        return f"{base}{check_segment(host, 'host')}/gpus/"

    def record(self, cluster: str, host: str, uuid: str) -> str:
        return self.records_prefix(cluster, host) + check_segment(uuid, "uuid")

    def locator(self, uuid: str) -> str:
        return f"{self.root}/gpus/{check_segment(uuid, 'uuid')}"

    def all_instances(self) -> str:
        return f"{self.root}/instances/"

    def instances_prefix(self, parent: str) -> str:
        return f"{self.all_instances()}{check_segment(parent, 'uuid')}/"

    def instance(self, parent: str, uuid: str) -> str:
        """Marks `uuid` as a MIG instance of GPU `parent` (empty value)."""
        return self.instances_prefix(parent) + check_segment(uuid, "uuid")

    def latest_prefix(self) -> str:
        return f"{self.root}/latest/"

    def latest(self, uuid: str) -> str:
        return self.latest_prefix() + check_segment(uuid, "uuid")

    # Blocks -------------------------------------------------------------------
    def blocks_prefix(self, uuid: str) -> str:
        return f"{self.root}/blocks/{check_segment(uuid, 'uuid')}/"

    def block(
        self, uuid: str, t_first: int, t_last: int, digest: str, upload: int = 0, chunk: int = 0
    ) -> str:
        """A raw block's key; (upload sequence, chunk seq) is its order (store/order.py)."""
        if not (0 <= upload < 10**16 and 0 <= chunk < 10**6):
            raise InvalidSegment(f"block order ({upload}, {chunk}) is out of range")
        name = f"{_ts(t_first)}-{_ts(t_last)}-{upload:016d}.{chunk:06d}-{digest}"
        return f"{self.blocks_prefix(uuid)}{name}"

    def upload_counter(self) -> str:
        """The key whose put revision numbers uploads (store/jobs.py::new_upload_seq)."""
        return f"{self.root}/upload-seq"

    def all_blocks(self) -> str:
        return f"{self.root}/blocks/"

    def block_range(self, uuid: str, start: int, end: int, window_ms: int) -> tuple[str, str]:
        """[range_start, range_end) holding every block that may overlap [start, end].

        A block never spans more than `window_ms`, so one starting before
        `start - window_ms` cannot reach `start`.
        """
        return _span(self.blocks_prefix(uuid), start, end, window_ms)

    # Rollups -------------------------------------------------------------------
    def all_rollups(self, tier: str) -> str:
        return f"{self.root}/rollups/{check_segment(tier, 'tier')}/"

    def rollups_prefix(self, tier: str, uuid: str) -> str:
        return f"{self.all_rollups(tier)}{check_segment(uuid, 'uuid')}/"

    def rollup(self, tier: str, uuid: str, t_first: int, t_last: int, digest: str) -> str:
        return f"{self.rollups_prefix(tier, uuid)}{_ts(t_first)}-{_ts(t_last)}-{digest}"

    def rollup_range(
        self, tier: str, uuid: str, start: int, end: int, window_ms: int
    ) -> tuple[str, str]:
        return _span(self.rollups_prefix(tier, uuid), start, end, window_ms)

    # Workload attribution ----------------------------------------------------------
    def workloads_prefix(self) -> str:
        return f"{self.root}/workloads/"

    def workloads(self, uuid: str) -> str:
        """All of a GPU's periods in one key: how stores written before day keys
        (2026-12-03) kept them (read and trimmed, never written)."""
        return self.workloads_prefix() + check_segment(uuid, "uuid")

    def workloads_day(self, uuid: str, day_ms: int) -> str:
        """The GPU's periods that start on one UTC day (`day_ms`, its midnight)."""
        return f"{self.workloads(uuid)}/{day_ms:013d}"

    def workloads_days(self, uuid: str) -> tuple[str, str]:
        """[start, end) of every day key of the GPU, and of no other GPU's (no character
        sorts between `/` and `0`, and a uuid holds no `/`):

        >>> k = Keys("/t")
        >>> start, end = k.workloads_days("GPU-1")
        >>> start <= k.workloads_day("GPU-1", 0) < end
        True
        >>> [start <= k.workloads_day(u, 0) < end for u in ("GPU-10", "GPU-1.x", "GPU-1-x")]
        [False, False, False]
        >>> start <= k.workloads("GPU-1") < end  # the old single key is read on its own
        False
        """
        return f"{self.workloads(uuid)}/", f"{self.workloads(uuid)}0"

    def workloads_of(self, uuid: str) -> tuple[str, str]:
        """[start, end) holding the GPU's old single key and its day keys (and maybe other
        GPUs' keys, `GPU-1-x` for `GPU-1`: a reader keeps only the keys naming `uuid`)."""
        return self.workloads(uuid), f"{self.workloads(uuid)}0"

    def compaction_cursor(self) -> str:
        return f"{self.root}/compaction/cursor"

    def compaction_report(self) -> str:
        return f"{self.root}/compaction/report"

    def compaction_lock(self) -> str:
        return f"{self.root}/compaction/lock"

    def rolled_marker(self, tier: str) -> str:
        """Up to where closed windows of a rollup tier were rolled up (store/closing.py)."""
        return f"{self.root}/compaction/rolled/{check_segment(tier, 'tier')}"

    def rollup_layout(self, tier: str) -> str:
        """The window (ms) a rollup tier's blocks were checked to fit (store/rollup_windows.py)."""
        return f"{self.root}/compaction/layout/{check_segment(tier, 'tier')}"

    def defragmented_at(self) -> str:
        return f"{self.root}/compaction/defragmented_at"

    @staticmethod
    def uuid_of(key: str) -> str:
        """The uuid segment of a block or rollup key."""
        return key.rsplit("/", 2)[-2]

    @staticmethod
    def block_start(key: str) -> int:
        """A block or rollup key's t_first alone (`parse_block` costs 3 us; a fleet's plan
        holds thousands of keys)."""
        return int(key[key.rindex("/") + 1 :][:_TS_DIGITS])

    @staticmethod
    @functools.lru_cache(maxsize=1 << 16)  # a key names one block forever; reads re-parse them
    def parse_block(key: str) -> BlockName:
        name = key.rsplit("/", 1)[-1]
        first, last, rest = name.split("-", 2)
        order, sep, digest = rest.partition("-")
        if not sep:  # a block written before upload order: no order segment
            return BlockName(int(first), int(last), rest)
        upload, _, chunk = order.partition(".")
        return BlockName(int(first), int(last), digest, int(upload), int(chunk))

    # Jobs ---------------------------------------------------------------------
    def jobs_prefix(self) -> str:
        return f"{self.root}/jobs/"

    def job(self, job_id: str) -> str:
        return self.jobs_prefix() + check_segment(job_id, "job id")

    def chunks_prefix(self, job_id: str) -> str:
        return f"{self.root}/chunks/{check_segment(job_id, 'job id')}/"

    def chunk(self, job_id: str, seq: int) -> str:
        return f"{self.chunks_prefix(job_id)}{seq:06d}"

    def failures_prefix(self, job_id: str) -> str:
        return f"{self.root}/chunk-failures/{check_segment(job_id, 'job id')}/"

    def failure(self, job_id: str, seq: int) -> str:
        return f"{self.failures_prefix(job_id)}{seq:06d}"


# Keys no kept answer reads: the progress of uploads, and compaction's own bookkeeping
# (cursor, lock, report, rolled and layout markers: read by compaction alone).
_UNREAD = frozenset({"jobs", "chunks", "chunk-failures", "upload-seq", "compaction"})


@dataclass(frozen=True, slots=True)
class Touched:
    """What a write to one key can change in a read (store/view.py): the GPUs it names,
    the fleet's records and latest values, or anything else (`other`)."""

    uuids: tuple[str, ...] = ()
    fleet: bool = False
    other: bool = False


def touched(root: str, key: str) -> Touched | None:
    """What a write to `key` can change in reads of the store under `root` (a Keys root);
    None when the key is not under it.

    >>> touched("/t", "/t/blocks/GPU-1/0000000001000-0000000002000-ab")
    Touched(uuids=('GPU-1',), fleet=False, other=False)
    >>> touched("/t", "/t/clusters/c/hosts/h/gpus/GPU-1")
    Touched(uuids=('GPU-1',), fleet=True, other=False)
    >>> touched("/t", "/t/jobs/j1"), touched("/t2", "/t/latest/GPU-1")
    (Touched(uuids=(), fleet=False, other=False), None)
    >>> touched("/t", "/t/compaction/rolled/5m"), touched("/t", "/t/clusters/c/hosts/h")
    (Touched(uuids=(), fleet=False, other=False), Touched(uuids=(), fleet=True, other=True))
    """
    if not key.startswith(root + "/"):
        return None
    parts = key[len(root) + 1 :].split("/")
    kind, rest = parts[0], parts[1:]
    if kind in _UNREAD:
        return Touched()
    if kind in ("blocks", "workloads") and rest:
        return Touched((rest[0],))
    if kind == "rollups" and len(rest) >= 2:
        return Touched((rest[1],))
    if kind in ("latest", "gpus") and rest:
        return Touched((rest[0],), fleet=True)
    if kind == "instances" and rest:
        return Touched(tuple(rest[:2]), fleet=True)
    if kind == "clusters":
        if len(rest) == 5 and rest[1] == "hosts" and rest[3] == "gpus":  # a GPU's record
            return Touched((rest[4],), fleet=True)
        return Touched(fleet=True, other=True)
    return Touched(other=True)
