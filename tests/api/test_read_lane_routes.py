"""The read lane keeps the routes it resolved, per path, within its bounds: Django's answer
for every path, only the lane's own routes kept, and never more than KEPT_ROUTES paths of at
most KEPT_PATH_CHARS characters (a client can make up any number of GPU paths; the oldest
goes first, so a fleet larger than the bound still finds most of its paths)."""

from __future__ import annotations

from django.urls import Resolver404, resolve

from telemetry_site import lane
from telemetry_site.lane import KEPT_PATH_CHARS, KEPT_ROUTES, ReadLane


def telemetry(uuid: str) -> str:
    return f"/api/v1/gpus/{uuid}/telemetry"


def same(a, b) -> bool:
    return (a.func, a.args, a.kwargs, a.url_name, a.route) == (
        b.func,
        b.args,
        b.kwargs,
        b.url_name,
        b.route,
    )


def test_routes_are_djangos_and_kept_within_bounds() -> None:
    read = ReadLane(app=None, handler=None)  # type: ignore[arg-type]
    paths = [telemetry(f"GPU-{n:05d}") for n in range(KEPT_ROUTES + 500)]
    for path in paths + paths[:10]:
        assert same(read._route(path), resolve(path))
    assert len(read._matches) == KEPT_ROUTES  # the oldest went, one at a time
    assert paths[-1] in read._matches and paths[200] not in read._matches
    assert read._route(paths[-1]).kwargs == {"uuid": paths[-1].split("/")[4]}

    long = telemetry("G" * KEPT_PATH_CHARS)
    assert read._route(long).kwargs == {"uuid": "G" * KEPT_PATH_CHARS}
    assert long not in read._matches

    assert read._route("/admin/").url_name not in read.routes
    assert "/admin/" not in read._matches  # not the lane's: Django answers it
    try:
        read._route("/no/such/route")
    except Resolver404:
        pass
    else:
        raise AssertionError("an unknown path resolved")


def test_another_urlconf_starts_the_routes_over(monkeypatch) -> None:
    read = ReadLane(app=None, handler=None)  # type: ignore[arg-type]
    read._route("/health")
    assert "/health" in read._matches
    other = _Other()
    monkeypatch.setattr(lane, "get_resolver", lambda urlconf: other)
    assert read._route("/health").url_name == "health-elsewhere"
    assert read._matches == {}  # the old URLconf's routes dropped (and this one not the lane's)


class _Other:
    """A resolver of another URLconf, as tests' override_settings(ROOT_URLCONF=...) makes."""

    def resolve(self, path: str):
        class Match:
            url_name = "health-elsewhere"

        return Match()
