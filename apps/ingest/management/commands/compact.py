"""`python manage.py compact`: one storage upkeep run now (what the beat task does)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from store.errors import StoreError
from store.upkeep import run_upkeep


class Command(BaseCommand):
    help = "Merge small blocks, build rollups, apply retention and expire old jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-retention", action="store_true", help="keep old data this run")
        parser.add_argument("--defrag", action="store_true", help="defragment etcd now")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            report = run_upkeep(retention=not opts["no_retention"], defrag=opts["defrag"] or None)
        except StoreError as exc:
            raise CommandError(str(exc)) from exc
        if report.get("skipped"):
            self.stdout.write("another compaction is running; nothing done")
            return
        self.stdout.write(json.dumps(report, indent=2))
        runs = [report, *report.get("shards", {}).values()]
        failed = sum(len(run.get("failures", ())) for run in runs)
        if failed:  # the run went on without them: say so where an operator looks
            self.stderr.write(f"{failed} GPU upkeep step(s) failed and were skipped: see failures")
