"""The Celery application.

Queues: ``train`` (reward-model refits; may run on GPU workers), ``select``
(query selection, CPU) and ``default``. Configuration comes from Django settings
under the ``CELERY_`` prefix, which in turn come from the environment.
"""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("prefloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _limit_torch_threads(**_: object) -> None:
    """Leave CPU for the web process: a worker on the same machine that fits with
    every core starves the annotators' requests (measured on 2 cores: p95 from
    key press to next comparison 294 ms with all cores, 206 ms with one; see
    benchmarks/annotator_ui.py). ``PREFLOOP_WORKER_TORCH_THREADS`` overrides."""
    from django.conf import settings

    threads = settings.PREFLOOP_WORKER_TORCH_THREADS or max(1, (os.cpu_count() or 2) - 1)
    import torch

    torch.set_num_threads(threads)
