"""Query-strategy benchmark: simple regret of the recommended candidate vs judgments.

Run from the repository root (needs ``pip install -r requirements-bench.txt``):

    python -m benchmarks.strategies                       # full protocol: 15 settings x 20 held-out seeds
    python -m benchmarks.strategies --first-seed 0 --seeds 5 --settings classic  # development
    python -m benchmarks.strategies --quick               # smoke run (tiny, figures not comparable)
    python -m benchmarks.strategies --report-only         # rebuild JSON/plots/table from saved runs

The fair protocol (``protocol``). A setting is a pool of candidate texts (the
composed pool of ``benchmarks.pools``, or the low-redundancy pool of real HH-RLHF
responses), a hidden-utility family (``linear``, ``mlp``, and the untuned
``smooth`` and ``needle`` of ``models_runtime.simulate``; ``hh_reward``: a reward
model fitted on the whole HH file), a Bradley–Terry scale ``s`` and a label-flip rate
``ε``. Each setting and seed is its own problem: N = 500 rows of the pool and a
utility standardised over them. The simulated annotator answers ``P(a ≻ b) =
σ(s·(u_a − u_b))`` and flips with probability ε, with one uniform per unordered pair
(common random numbers that do not depend on the order a pair is shown). Every
strategy starts from the same 5 random pairs and runs as the app does: the app's
default models (which learn the flip rate: no model is told ε, s or anything about
u), refitted on the app's retrain cadence, each fit followed by the strategy's batch
through the refill path, until T = 150 judgments. We record the normalised simple
regret ``(u* − u(x̂)) / (u* − mean u)`` of the recommended item (argmax of the fitted
mean utility) and Kendall's τ. The report pairs every difference by problem, with
bootstrap intervals over problems, and names the strategy compared with EUBO before
the run (``NAMED_BEST``). The report's seeds are held out (from
``HELD_OUT_FIRST_SEED``); develop on lower seeds. Runs are appended to
``<tag>_runs.jsonl`` as they finish, with the code version, and skipped on a rerun
with the same config digest, so a long run can be stopped and resumed.

Strategies: every strategy of the registry (``activelearn.strategies.registry``, in
its order) driven with the real ``models_runtime`` models (the default kind, the
kernel Bradley–Terry model, for all of them: see ``protocol.model_kind``), and
two peers: ``botorch_eubo`` (BoTorch ``PairwiseGP`` on PCA-reduced features +
analytic EUBO, its top pairs as the batch) and ``choix_random`` (random pairs,
non-contextual Bradley–Terry by choix's ILSR, recommendation = best compared item).
The previous protocol's results (ε given to the models, a refit after every
judgment) are kept in ``results/strategies_previous_protocol.*``.

Read it by name:

- ``protocol``: settings, ``BenchConfig``, the strategy list, the cadence, the
  problem, start pairs and the common-random-numbers annotator;
- ``learners``: the models a run refits (MLP head, ensemble, choix);
- ``eubo``: the BoTorch peer;
- ``runner``: one run, and all runs in parallel and resumable;
- ``summary``: means, medians, paired ratios and differences with bootstrap
  intervals, wins by setting, targets;
- ``difficulty``: how redundant a pool is and how linear a utility family is;
- ``report``: the results JSON, the Markdown table and the plots;
- ``scale``: every strategy choosing a batch among 50,000;
- ``cli``: the command line (``__main__`` runs it).
"""
