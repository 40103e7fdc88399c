"""Strict environment parsing for settings.

Every helper raises ImproperlyConfigured on a value it cannot parse: a typo in
an operator's environment must stop the process, not fall back silently.
`NAME_FILE` variants let secrets come from mounted files (Kubernetes, Docker).
"""

from __future__ import annotations

import itertools
import os
import re

from django.core.exceptions import ImproperlyConfigured

from timeparse.durations import parse_duration

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str) -> str:
    """The variable's value, or `default` when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_secret(name: str, default: str = "") -> str:
    """`NAME`, else the content of the file named by `NAME_FILE`, else `default`."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum {minimum}")
    return value


def env_duration(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_tiers(name: str, default: str) -> list[dict[str, float | str]]:
    """Storage tiers from `name:resolution:retention,...` (the first must be `raw:0:...`).

    Resolutions strictly increase, each a whole multiple of the one before, so
    coarser tiers can be computed from finer ones exactly.
    """
    raw = os.environ.get(name, "").strip() or default
    tiers: list[dict[str, float | str]] = []
    try:
        for item in raw.split(","):
            tier, resolution, retention = (part.strip() for part in item.split(":"))
            tiers.append(
                {
                    "name": tier,
                    "resolution": parse_duration(resolution),
                    "retention": parse_duration(retention),
                }
            )
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r}: {exc} (example: {default})") from None
    if not tiers or tiers[0]["name"] != "raw" or tiers[0]["resolution"] != 0:
        raise ImproperlyConfigured(f"{name}: the first tier must be raw:0:<retention>")
    for finer, coarser in itertools.pairwise(tiers):
        fr, cr = float(finer["resolution"]), float(coarser["resolution"])
        if cr <= fr or (fr and (cr * 1000) % (fr * 1000)):
            raise ImproperlyConfigured(
                f"{name}: tier {coarser['name']} must be coarser than "
                f"and a multiple of {finer['name']}"
            )
    # Rollups of a day are written once the day is over, from its raw samples
    # (store/closing.py): raw must outlive a day plus the closing grace.
    if len(tiers) > 1 and float(tiers[0]["retention"]) < _MIN_RAW_WITH_ROLLUPS_S:
        raise ImproperlyConfigured(
            f"{name}: raw retention must be at least 26h when rollup tiers exist "
            "(a rollup day is computed from raw samples once it is over)"
        )
    return tiers


_MIN_RAW_WITH_ROLLUPS_S = 26 * 3600.0


_RATE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate like `120/min`; `off` (or `none`) turns the throttle off."""
    raw = os.environ.get(name, "").strip().lower() or default
    if raw in ("off", "none"):
        return None
    if not _RATE.match(raw):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate like 120/min (or off)")
    return raw


def with_password(url: str, password: str) -> str:
    """`url` with `password` in it (redis://:pw@host...), unless it has one or none is given."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if not password or parts.password:
        return url
    user = parts.username or ""
    netloc = f"{user}:{quote(password, safe='')}@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


_SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENDPOINT = re.compile(r"^(https?://)?[^\s/:,;]+:\d{1,5}$")


def env_shards(name: str) -> dict[str, list[str]]:
    """etcd shards from `name=endpoint,endpoint;name=...` (empty when unset).

    A shard's name is the GPU cluster whose data it holds; `default` is
    reserved (it is ETCD_ENDPOINTS). Names and endpoints are checked here so a
    typo stops the process instead of sending a cluster to the default shard.
    """
    raw = os.environ.get(name, "").strip()
    shards: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        shard, sep, urls = item.partition("=")
        shard = shard.strip()
        endpoints = [u.strip() for u in urls.split(",") if u.strip()]
        if not sep or not _SHARD_NAME.match(shard) or shard == "default":
            raise ImproperlyConfigured(
                f"{name}: {item!r} must be NAME=host:port,... with NAME a cluster name "
                "other than 'default' (example: prod-a=http://etcd-a:2379;prod-b=etcd-b:2379)"
            )
        bad = [u for u in endpoints if not _ENDPOINT.match(u)]
        if not endpoints or bad:
            raise ImproperlyConfigured(f"{name}: shard {shard!r} needs host:port endpoints")
        if shard in shards:
            raise ImproperlyConfigured(f"{name}: shard {shard!r} is named twice")
        shards[shard] = endpoints
    return shards
