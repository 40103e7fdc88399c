# Every entry point (manage.py, celery -A telemetry_site, uvicorn telemetry_site.asgi)
# imports this package before the settings: the settings `make run` wrote to
# var/local.env are put into the environment here, where it has none of them.
from telemetry_site import localenv

localenv.load()

from telemetry_site.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
