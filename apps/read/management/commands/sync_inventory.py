"""`python manage.py sync_inventory`: rebuild the admin's GPU table from etcd."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.read import inventory
from store import default_keys
from store.errors import StoreError


class Command(BaseCommand):
    help = (
        "Rebuild the admin's GPU inventory from etcd (the system of record): add or update "
        "every GPU, remove rows of GPUs etcd no longer has."
    )

    def handle(self, *args: Any, **opts: Any) -> None:
        keys = default_keys()
        try:
            counts = inventory.sync(keys)
        except StoreError as exc:
            raise CommandError(f"cannot read etcd under {keys.root}: {exc}") from exc
        self.stdout.write(
            f"{counts['gpus']} GPU(s) in etcd under {keys.root}: {counts['created']} added, "
            f"{counts['updated']} updated, {counts['deleted']} removed"
        )
