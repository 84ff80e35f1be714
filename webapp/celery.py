"""The Celery application.

Queues: ``train`` (reward-model refits; may run on GPU workers), ``select``
(query selection, CPU), ``default`` (imports) and ``embed`` (embedding new
candidates, on a worker of its own so nothing waits behind it). Configuration comes from Django settings
under the ``CELERY_`` prefix, which in turn come from the environment.
"""

import os

from celery import Celery
from celery.signals import worker_process_init
from django.conf import settings

from webapp import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# filesystem:// (the no-server default) writes each message whole; see webapp/broker.py.
broker.install()

app = Celery("prefloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _yield_cpu_to_web(**_: object) -> None:
    """Leave CPU for the web process: a worker on the same machine that fits
    with every core at full priority starves the annotators' requests.

    Each worker process runs at a lower scheduling priority
    (``PREFLOOP_WORKER_NICE``, default 10: the kernel then gives a busy web
    process about ten times the worker's share of a contended core) and
    torch uses cores − 1 threads (``PREFLOOP_WORKER_TORCH_THREADS``). Measured
    on 2 cores with benchmarks/annotator_ui.py; figures in
    benchmarks/results/annotator_ui.json and the README. On Linux,
    ``PREFLOOP_WORKER_SCHED_IDLE`` goes further: the process (and the threads
    it starts) runs only on CPU no other process wants, so a web request that
    wakes up never waits behind a fit; under full load the worker then fits
    nothing (docs/ARCHITECTURE.md, "The annotate path under a crowd").
    """
    if settings.PREFLOOP_WORKER_NICE and hasattr(os, "nice"):
        os.nice(settings.PREFLOOP_WORKER_NICE)
    if settings.PREFLOOP_WORKER_SCHED_IDLE and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    threads = settings.PREFLOOP_WORKER_TORCH_THREADS or max(1, (os.cpu_count() or 2) - 1)
    import torch

    torch.set_num_threads(threads)
