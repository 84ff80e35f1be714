"""The Celery application.

Queues: ``train`` (reward-model refits; may run on GPU workers), ``select``
(query selection, CPU) and ``default``. Configuration comes from Django settings
under the ``CELERY_`` prefix, which in turn come from the environment.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("prefloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
