"""The admin's GPU inventory against real etcd: list, search, filter, detail, permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command

from apps.read import inventory
from apps.read.models import Gpu
from store.keys import Keys
from tests.admin.inventory_support import store_gpu

LIST = "/admin/gpus/gpu/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(etcd_root: str) -> Keys:
    """Three GPUs in etcd, mirrored as a worker would: two clusters, two models."""
    keys = Keys(etcd_root)
    records = []
    records += store_gpu(keys, "GPU-aaaa-0001", util=87, host="node-01", cluster="prod")
    records += store_gpu(keys, "GPU-bbbb-0002", util=3, host="node-02", cluster="prod", gpu_index=1)
    records += store_gpu(
        keys, "GPU-cccc-0003", host="lab-07", cluster="lab", model="NVIDIA A100-SXM4-40GB"
    )
    assert inventory.mirror(records) == 3
    return keys


def rows(response) -> set[str]:
    return {gpu.uuid for gpu in response.context["cl"].result_list}


def test_it_sends_anonymous_users_to_the_login_page(client, fleet):
    gpu = Gpu.objects.get(uuid="GPU-aaaa-0001")
    for url in (LIST, f"{LIST}{gpu.pk}/change/", "/admin/gpus/ingestjob/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url


def test_it_refuses_staff_without_the_view_permission(client, fleet):
    user = User.objects.create_user("viewer", password="pw-123456", is_staff=True)
    client.force_login(user)
    assert client.get(LIST).status_code == 403
    assert client.get("/admin/gpus/ingestjob/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_gpu"))
    assert client.get(LIST).status_code == 200


def test_it_lists_every_mirrored_gpu_with_its_columns(admin_client, fleet):
    # two minutes later, in etcd only: the list's "last seen" must show it
    store_gpu(
        fleet, "GPU-cccc-0003", seq=120, host="lab-07", cluster="lab", model="NVIDIA A100-SXM4-40GB"
    )
    response = admin_client.get(LIST)
    assert response.status_code == 200
    assert rows(response) == {"GPU-aaaa-0001", "GPU-bbbb-0002", "GPU-cccc-0003"}
    html = response.content.decode()
    for text in ("node-02", "lab", "NVIDIA A100-SXM4-40GB", "Last seen"):
        assert text in html
    # last seen comes from etcd's latest values for the rows shown (first seen is 8:42),
    # on one short line (the table fits 1280 px: tests/dashboard/test_dashboard_browser.py)
    assert "2025-07-18 20:44:" in html
    assert 'href="/gpus/GPU-aaaa-0001/"' in html  # the chart link
    assert "Add GPU" not in html  # a mirror: no hand edits


def test_it_searches_by_uuid_and_by_host(admin_client, fleet):
    assert rows(admin_client.get(LIST, {"q": "bbbb"})) == {"GPU-bbbb-0002"}
    assert rows(admin_client.get(LIST, {"q": "lab-07"})) == {"GPU-cccc-0003"}
    assert rows(admin_client.get(LIST, {"q": "no-such-thing"})) == set()


def test_it_filters_by_cluster_and_by_model(admin_client, fleet):
    assert rows(admin_client.get(LIST, {"cluster": "prod"})) == {"GPU-aaaa-0001", "GPU-bbbb-0002"}
    by_model = admin_client.get(LIST, {"model": "NVIDIA A100-SXM4-40GB"})
    assert rows(by_model) == {"GPU-cccc-0003"}
    html = admin_client.get(LIST).content.decode()
    assert "By cluster" in html and "By model" in html


def test_its_detail_page_shows_latest_values_from_etcd_and_links_the_chart(admin_client, fleet):
    gpu = Gpu.objects.get(uuid="GPU-aaaa-0001")
    # etcd moves on after the mirror: the page must show etcd's value, not the row's
    store_gpu(fleet, "GPU-aaaa-0001", util=42.5, temp=61, seq=9, host="node-01", cluster="prod")
    response = admin_client.get(f"{LIST}{gpu.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "DCGM_FI_DEV_GPU_UTIL" in html and "<td>42.5</td>" in html
    assert "DCGM_FI_DEV_GPU_TEMP" in html and "<td>61</td>" in html
    assert "2025-07-18T20:42:43Z" in html  # the newer sample's time
    assert 'href="/gpus/GPU-aaaa-0001/"' in html
    assert "Save" not in html  # view-only


def test_its_detail_page_says_when_etcd_no_longer_has_the_gpu(admin_client, fleet):
    ghost = Gpu.objects.create(
        uuid="GPU-gone", cluster="prod", host="h", first_seen="2025-01-01T00:00:00Z"
    )
    html = admin_client.get(f"{LIST}{ghost.pk}/change/").content.decode()
    assert "etcd has no such GPU any more" in html


def test_sync_inventory_rebuilds_the_table_from_etcd(fleet, capsys):
    Gpu.objects.filter(uuid="GPU-aaaa-0001").delete()
    Gpu.objects.filter(uuid="GPU-bbbb-0002").update(host="stale-host")
    Gpu.objects.create(uuid="GPU-gone", cluster="prod", host="h", first_seen="2025-01-01T00:00:00Z")
    call_command("sync_inventory")
    assert "3 GPU(s) in etcd" in capsys.readouterr().out
    assert set(Gpu.objects.values_list("uuid", flat=True)) == {
        "GPU-aaaa-0001",
        "GPU-bbbb-0002",
        "GPU-cccc-0003",
    }
    gpu = Gpu.objects.get(uuid="GPU-bbbb-0002")
    assert gpu.host == "node-02"
    assert gpu.last_seen is not None and gpu.last_seen.isoformat() == "2025-07-18T20:42:34+00:00"
    call_command("sync_inventory")
    assert "0 added, 0 updated, 0 removed" in capsys.readouterr().out


def test_the_rebuild_button_runs_the_sync(admin_client, fleet):
    Gpu.objects.all().delete()
    response = admin_client.post(f"{LIST}sync/", follow=True)
    assert "3 GPU(s) in etcd: 3 added" in response.content.decode()
    assert Gpu.objects.count() == 3
    assert admin_client.get(f"{LIST}sync/").status_code == 405


def test_mirror_logs_and_carries_on_when_the_database_fails(db, monkeypatch, caplog):
    from django.db import OperationalError

    def broken(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(Gpu.objects, "bulk_create", broken)
    record = {"uuid": "GPU-x", "cluster": "c", "host": "h", "first_seen": 1}
    assert inventory.mirror([record]) == 0
    assert "database is locked" in caplog.text and "sync_inventory" in caplog.text
    assert inventory.mirror([{"uuid": "GPU-y"}]) == 0  # malformed: logged, not raised


def test_mirror_follows_a_gpu_that_moved_host(fleet):
    records = store_gpu(fleet, "GPU-aaaa-0001", seq=5, host="node-09", cluster="prod")
    assert [r["host"] for r in records] == ["node-09"]
    inventory.mirror(records)
    assert Gpu.objects.get(uuid="GPU-aaaa-0001").host == "node-09"
    assert Gpu.objects.filter(uuid="GPU-aaaa-0001").count() == 1
