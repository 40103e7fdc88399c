"""The parse of a large upload, in a worker (service.accept enqueues it by name).

A task module of the ingest app, not of workers/: the workers' tasks never import
ingest (pyproject's import contracts); the site's Celery app includes this one.
"""

from __future__ import annotations

from celery import shared_task

from apps.ingest import service


@shared_task(name=service.PARSE_TASK, acks_late=True)
def parse_upload(
    path: str,
    source: str,
    cluster: str,
    job_id: str,
    root: str,
    seq: int,
    owner: str | None = None,  # None: a message queued before quotas (not counted)
) -> None:
    service.parse_spooled(path, source, cluster, (job_id, root, seq), owner)
