"""Query-strategy benchmark: simple regret of the recommended candidate vs judgments.

Run from the repository root (needs ``pip install -r requirements-bench.txt``):

    python -m benchmarks.strategies                       # full protocol: 8 settings x 20 seeds
    python -m benchmarks.strategies --seeds 3 --workers 2 # a reduced run
    python -m benchmarks.strategies --quick               # smoke run (tiny, figures not comparable)
    python -m benchmarks.strategies --report-only         # rebuild JSON/plots/table from saved runs

Protocol. A setting is a hidden-utility family (``linear`` or ``mlp`` in the MiniLM
embedding), a Bradley–Terry scale ``s`` and a label-flip rate ``ε``. For each seed a
pool of N = 500 candidate texts (out of 2,000 written in ``benchmarks.pools``, one
prompt, so every pair is allowed) and a hidden utility ``u`` (standardised over the N)
are drawn; the simulated annotator answers ``P(a ≻ b) = σ(s·(u_a − u_b))`` and flips
the answer with probability ε. Every strategy starts from the same 5 random pairs and
asks one pair per step until T = 150 judgments. After each step it refits its model
(warm-started) and recommends ``x̂ = argmax`` of the fitted (mean) utility; we record
the normalised simple regret ``(u* − u(x̂)) / (u* − mean u)`` over all N and Kendall's
τ between fitted scores and ``u``. Answers to a pair are common random numbers (the
same uniform for pair (i, j) whoever asks it), so strategies are compared on the same
annotator noise and ratios are paired by seed. Utilities, answers and regret come
from ``models_runtime.simulate``, the one simulator.

Cost controls, all in ``BenchConfig`` and recorded in the JSON: model strategies refit
after every judgment (``refit_every = 1``; ``--refit-every k`` exists for exploratory
runs and changes the digest under which runs are saved); regret and τ are recorded every
``eval_every = 5`` judgments and at T. Strategies whose choice does not read a model
(random, least_compared, choix_random) fit their recommendation model only at those
points, which changes nothing they select. Benchmark heads are smaller than the app's
defaults (hidden 32, 8 members, at most 100 epochs, patience 10); the scale section
uses the defaults. Runs are appended to ``<tag>_runs.jsonl`` as they finish and
skipped on a rerun with the same config digest, so a long run can be stopped and
resumed.

Strategies: every strategy of the registry (``activelearn.strategies.registry``, in
its order) driven with the real ``models_runtime`` models (single MLP head for those
that need scores or gradients and for the recommendation of those that need nothing;
anchored ensemble for those that need member scores), and two peers:
``botorch_eubo`` (BoTorch ``PairwiseGP`` on PCA-reduced features + analytic EUBO over
candidate pairs) and ``choix_random`` (random pairs, non-contextual Bradley–Terry by
choix's ILSR, recommendation = best compared item).

Read it by name:

- ``protocol``: settings, ``BenchConfig``, the strategy list, the seed's problem,
  start pairs and the common-random-numbers annotator;
- ``learners``: the models a run refits (MLP head, ensemble, choix);
- ``eubo``: the BoTorch peer;
- ``runner``: one run, and all runs in parallel and resumable;
- ``summary``: medians, paired ratios to random with bootstrap intervals, targets;
- ``report``: the results JSON, the Markdown table and the plots;
- ``scale``: every strategy choosing a batch among 50,000;
- ``cli``: the command line (``__main__`` runs it).
"""
