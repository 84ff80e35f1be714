from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from annotation import checks  # noqa: F401 - registers the deployment checks
        from annotation.services.retry import install_reconnecting_reads

        # A read whose connection the database dropped runs again on a new one (not a server error).
        connection_created.connect(install_reconnecting_reads, dispatch_uid="annotation-reconnecting-reads")
