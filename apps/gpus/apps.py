from django.apps import AppConfig


class GpusConfig(AppConfig):
    name = "apps.gpus"
    label = "gpus"
