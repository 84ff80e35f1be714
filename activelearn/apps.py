from django.apps import AppConfig


class ActivelearnConfig(AppConfig):
    name = "activelearn"
    verbose_name = "Active learning"

    def ready(self) -> None:
        # The loop sits above annotation: annotation calls it only through this port.
        from activelearn.port import LOOP
        from annotation import loop

        loop.connect(LOOP)
