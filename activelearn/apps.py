from django.apps import AppConfig


class ActivelearnConfig(AppConfig):
    name = "activelearn"
    verbose_name = "Active learning"
