"""Storage tiers (raw and rollups) built from settings.STORAGE_TIERS."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

# A rollup block covers at most this long (a day of 1-minute buckets, 96 of 15-minute
# ones) and never less than one bucket. It is written once, when its window is closed
# (store/closing.py), so the raw tier must keep a window's samples until then.
ROLLUP_WINDOW_MS = 24 * 3600 * 1000
BUCKETS_PER_BLOCK = 1440


@dataclass(frozen=True)
class Tier:
    name: str
    resolution_ms: int  # 0 for raw
    retention_ms: int
    window_ms: int  # the longest span of one block of this tier

    @property
    def is_raw(self) -> bool:
        return self.resolution_ms == 0


# tiers() by the settings they were made from: every step read asks several times
_made: dict[tuple, list[Tier]] = {}


def tiers() -> list[Tier]:
    """Raw first, then rollups from finest to coarsest."""
    specs = settings.STORAGE_TIERS
    made_from = (settings.BLOCK_WINDOW_SECONDS, tuple(tuple(s.items()) for s in specs))
    made = _made.get(made_from)
    if made is None:
        if len(_made) > 64:
            _made.clear()  # settings changed many times (tests): a bound
        made = _made[made_from] = _tiers(int(settings.BLOCK_WINDOW_SECONDS) * 1000, specs)
    return list(made)


def _tiers(raw_window: int, specs: list[dict]) -> list[Tier]:
    out = []
    for spec in specs:
        resolution = int(float(spec["resolution"]) * 1000)
        window = (
            raw_window
            if resolution == 0
            else max(raw_window, resolution, min(resolution * BUCKETS_PER_BLOCK, ROLLUP_WINDOW_MS))
        )
        # rollup windows are whole raw windows, so a rollup never straddles one
        window = -(-window // raw_window) * raw_window
        out.append(
            Tier(str(spec["name"]), resolution, int(float(spec["retention"]) * 1000), window)
        )
    return out


def rollups() -> list[Tier]:
    return [t for t in tiers() if not t.is_raw]


def for_step(step_ms: int) -> Tier | None:
    """The coarsest rollup tier whose buckets combine exactly into `step_ms` buckets."""
    fitting = [
        t for t in rollups() if t.resolution_ms <= step_ms and step_ms % t.resolution_ms == 0
    ]
    return fitting[-1] if fitting else None
