from django.apps import AppConfig


class GpusConfig(AppConfig):
    name = "apps.read"
    label = "gpus"

    def ready(self) -> None:
        # Workers announce stored chunks without importing this app (store/events.py);
        # these receivers run in the worker process, where Django set up every app.
        from apps.read import inventory, live
        from store.events import chunk_stored

        chunk_stored.connect(inventory.on_chunk_stored, dispatch_uid="gpus.inventory")
        chunk_stored.connect(live.on_chunk_stored, dispatch_uid="gpus.live")
