from django.apps import AppConfig


class GpusConfig(AppConfig):
    name = "apps.read"
    label = "gpus"
