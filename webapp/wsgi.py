"""WSGI entry point."""

import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()


def tune_thread_switching() -> None:
    """Hand the GIL over every ``PREFLOOP_WEB_SWITCH_INTERVAL_MS`` (Python's
    default is 5 ms). A web process's threads mostly wait on the database; one
    whose reply has arrived waited up to the whole interval while another
    thread of its process computed. At 1 ms the crowd benchmark's p95 cycle
    fell from 58–74 ms to 51 ms with no more web CPU per cycle
    (docs/ARCHITECTURE.md, "The annotate path under a crowd"). 0 keeps Python's."""
    interval_ms = settings.PREFLOOP_WEB_SWITCH_INTERVAL_MS
    if interval_ms > 0:
        sys.setswitchinterval(interval_ms / 1000.0)


tune_thread_switching()
