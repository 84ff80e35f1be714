"""Annotate-load benchmark (issue 16): the annotate path's capacity, and a crowd's wait.

``python -m benchmarks.annotate_load`` runs prefloop as deployed on 127.0.0.1
and writes ``benchmarks/results/annotate_load.json``; ``--short`` is the CI form
(4 clients, 2 s warm-up + 8 s measured per run, to a temporary file).

What runs (``benchmarks.reliability.stack.Stack``, one per database, a fresh
study and fresh annotator accounts per run):

- **postgres**: PostgreSQL, Redis as broker (db 13) and cache (db 14), gunicorn
  with docker/compose.yaml's web options and environment, a Celery worker on
  train, select, default (the compose worker's concurrency) that retrains as
  answers come, a worker on embed, beat;
- **sqlite**: the embedded default: SQLite and the filesystem broker, the
  same workers and beat as scripts/run starts, the same gunicorn.

Each study is pairwise, the app's default model, strategy and queue settings,
overlap 2, a budget sized so it outlasts the run; the simulated annotators
prefer the better candidate every time, which the model can learn.

Two loops, one thread and one kept-alive connection per annotator:

- **api**: ``GET /api/v1/studies/<slug>/next/`` then ``POST …/judgments/``
  (token auth); a cycle is the two requests;
- **htmx**: the annotate page as a browser drives it (:mod:`.htmx`): one
  ``POST /s/<slug>/annotate/submit/`` per answer with the form's CSRF token and
  htmx's headers, whose reply carries the next comparison and the one after it;
  a cycle is that request. "next" figures are the page loads (the first, and
  "Check again" when nothing was waiting).

Two shapes: **capacity**, closed loop with no think time (1, 16 and 64
clients), and **crowd**, 64 annotators each thinking an exponentially
distributed time of mean 2 s before each answer (about 30 answers/s offered).
Each run answers for a warm-up (10 s) and then a measured window (60 s).
A crowd configuration runs three times (its p95 moves by tens of ms from run
to run on 2 cores) and the summary gives the median; ``--repeats`` sets it.

A run's record (``runs`` in the results file):

- ``cycles_per_second``: cycles ended in the window / its length;
  ``p50/p95/p99_cycle_ms``, ``…_next_ms``, ``…_submit_ms``: client-observed
  latency of the cycles ended in the window (think time excluded);
- ``errors`` (non-2xx replies and connection failures, whole run),
  ``errors_by_kind``, ``server_errors`` (5xx and connection failures);
- the database afterwards (``benchmarks.reliability.load.verify``): ``lost``
  (acknowledged answers not stored), ``duplicated`` (a comparison judged beyond
  its overlap, an annotator judging one twice, one answer acknowledged as new
  twice), leases left;
- ``no_comparison``: spells when a client was told "no comparison available"
  while the study still wanted judgments (count, total and longest seconds);
- ``model_chosen_share``: of the comparisons answered in the window, the share
  chosen by the study's strategy (not a random fallback; the whole run's share
  and the count by strategy beside it);
- ``versions_published``: reward-model versions published in the window, and
  ``longest_publication_gap_s``: the longest stretch of it without one;
- ``cpu_ms_per_cycle``: CPU per cycle in the window of gunicorn (``web``), the
  retraining worker, the embed worker and beat, PostgreSQL's backends for the
  run's database, the load generator itself, and the whole machine
  (:mod:`.measure`); ``load_average`` before and during;
- ``command``, ``commit``, the serving configuration.

``summary``: ``crowd64_pg_p95_cycle_ms``, ``crowd64_sqlite_p95_cycle_ms``,
``crowd64_pg_model_chosen_share``, ``capacity_pg16_cycles_per_second`` (API
loop, median of a configuration's records) and ``ratio_to_label_studio_pg16``:
with ``--peer`` (on for the full run) Label Studio (:mod:`.label_studio`) runs
the same capacity load on PostgreSQL and on SQLite with 16 clients, alternating
with prefloop (LS, prefloop, LS, prefloop), and the ratio is the median of the
matched pairs' (null when Label Studio could not run; ``label_studio`` says why).
A rerun of a configuration replaces its records; the others are kept.
"""
