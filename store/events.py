"""What the store's writers announce once a chunk is committed (Django signals).

Workers send `chunk_stored` after `store.write.write_chunk` returned; the read app
connects its receivers (the admin's inventory mirror, the live feed) in its
AppConfig.ready. Workers so reach both without importing the read app, and a
process without the read app installed simply has no receivers.

Receivers must not raise: the chunk is already in etcd, and an exception here
would fail the task (and retry a write that is done).
"""

from __future__ import annotations

from django.dispatch import Signal

#: kwargs: chunk_id (str, "job:seq"), batches (list[store.write.GpuBatch]: the chunk's
#: samples per GPU), records (list[dict]: GPU records registered or changed by the
#: chunk), fresh (bool: False when the chunk had been stored before, a redelivery).
chunk_stored = Signal()
