"""Reliability benchmark (issue 15): the app under load, faults and hostile input.

``python -m benchmarks.reliability`` runs every section on 127.0.0.1 (the
development machine's PostgreSQL and Redis, see README) and writes
``benchmarks/results/reliability.json``; ``--sections`` picks some, and the
file keeps the other sections' last figures. ``--short`` is the form CI runs
(a few cases each, shorter leases), so a regression fails the build.

Sections, each a module with ``run(stack_args, short) -> dict`` under its key:

- ``faults`` (:mod:`.faults`): workers SIGKILLed mid-retrain, the broker
  restarted empty, every database connection dropped; the loop must publish a
  new model version within 60 s with the last good one served throughout, and
  lose or duplicate no answer; annotators answering over HTTP meanwhile see no
  server error.
- ``load`` (:mod:`.load`): 64 annotators answering 10,000 comparisons through
  the API on PostgreSQL, 16 on SQLite; cycle times, errors, and every
  acknowledged answer stored exactly once.
- ``schemathesis`` (:mod:`.schema`): generated requests to every operation of
  the REST API as an annotator, a researcher and a stranger; no server error
  and no answer the OpenAPI schema does not describe.
"""
