"""ETCD_SHARDS is parsed strictly: a typo stops the process instead of misrouting a cluster."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from store import shards
from telemetry_site.env import env_shards


def test_shards_are_named_clusters_with_their_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ETCD_SHARDS", " prod-a=http://etcd-a1:2379, http://etcd-a2:2379 ;prod-b=etcd-b:2379; "
    )
    assert env_shards("ETCD_SHARDS") == {
        "prod-a": ["http://etcd-a1:2379", "http://etcd-a2:2379"],
        "prod-b": ["etcd-b:2379"],
    }
    monkeypatch.delenv("ETCD_SHARDS")
    assert env_shards("ETCD_SHARDS") == {}


@pytest.mark.parametrize(
    "text",
    [
        "prod-a",  # no endpoints
        "prod-a=",  # empty
        "default=etcd:2379",  # reserved: the default shard is ETCD_ENDPOINTS
        "prod-a=etcd-a",  # no port
        "prod-a=etcd:2379/path",
        "prod a=etcd:2379",  # not a cluster name
        "prod-a=etcd:2379;prod-a=other:2379",  # twice
    ],
)
def test_bad_shard_settings_are_refused(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("ETCD_SHARDS", text)
    with pytest.raises(ImproperlyConfigured, match="ETCD_SHARDS"):
        env_shards("ETCD_SHARDS")


def test_a_cluster_lives_in_the_shard_of_its_name_else_in_the_default(settings) -> None:
    settings.ETCD_SHARDS = {"prod-b": ["etcd-b:2379"]}
    assert shards.names() == ["default", "prod-b"]
    assert shards.for_cluster("prod-b") == "prod-b"
    assert shards.for_cluster("prod-a") == "default"
    assert shards.endpoints("default") == list(settings.ETCD_ENDPOINTS)
    with shards.in_cluster("prod-b"):
        assert shards.current() == "prod-b" and shards.pinned()
    assert shards.current() == "default" and not shards.pinned()
