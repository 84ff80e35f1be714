"""One run (setting, strategy, seed) and the runs of a benchmark, in parallel and resumable.

A run starts from the problem's start pairs and follows the app's loop: the model
is fitted on the app's retrain cadence (:func:`protocol.next_fit`; warm-started),
and after each fit the strategy chooses the batch of pairs answered before the next
one, as the app's refill does (``select`` for twice the batch, then ``diversify``
drops near-duplicate pairs, random pairs fill what is left). At T every model is
refitted on all T judgments. On the evaluation grid the run records the normalised
simple regret of the recommendation and Kendall's τ between the model's scores and
the hidden utility. A prefloop strategy's recommendation is the app's, what a
researcher sees (:func:`app_recommendation`); a peer's is its own model's best.
Both regrets are kept for every run (``regret_app``, ``regret_model``). Finished runs
are appended to a JSONL file as they finish and skipped on a rerun under the same
config digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from activelearn.strategies import SelectionInput, get_strategy, registry
from activelearn.strategies.base import diversify
from benchmarks.strategies.eubo import EuboLearner
from benchmarks.strategies.learners import ChoixLearner, KindLearner, Learner
from benchmarks.strategies.protocol import (
    PREFLOOP,
    RECOMMENDATION_SAMPLES,
    STRATEGIES,
    Annotator,
    BenchConfig,
    Pool,
    Setting,
    load_pool,
    make_problem,
    model_kind,
    model_outputs,
    next_fit,
    start_pairs,
)
from models_runtime.metrics import kendall_tau
from models_runtime.recommend import recommend
from models_runtime.simulate import normalised_regret

Job = tuple[Setting, str, int, BenchConfig]


def make_learner(strategy: str, features: np.ndarray, seed: int, cfg: BenchConfig) -> Learner:
    """The model ``strategy`` is run with (see ``learners`` and ``eubo``)."""
    if strategy in PREFLOOP:
        return KindLearner(model_kind(strategy), features, seed, cfg, registry.get_spec(strategy).needs)
    if strategy == "choix_random":
        return ChoixLearner(features.shape[0], cfg)
    return EuboLearner(features, seed, cfg)


class Judgments:
    """The judgments of one run so far, asked of the run's annotator."""

    def __init__(self, n_items: int, annotator: Annotator, rng: np.random.Generator) -> None:
        self.annotator = annotator
        self.rng = rng
        self.left: list[int] = []
        self.right: list[int] = []
        self.outcome: list[float] = []
        self.asked: set[tuple[int, int]] = set()
        self.counts = np.zeros(n_items, dtype=np.int64)
        self.groups = np.zeros(n_items, dtype=np.int64)  # one prompt: every pair is allowed

    def __len__(self) -> int:
        return len(self.left)

    def ask(self, i: int, j: int) -> None:
        """Ask the annotator about the pair and keep the answer."""
        i, j = min(i, j), max(i, j)
        # Random presentation order, as the interface does; the answer does not
        # depend on it (common random numbers per unordered pair).
        a, b = (i, j) if self.rng.random() < 0.5 else (j, i)
        self.left.append(a)
        self.right.append(b)
        self.outcome.append(self.annotator.answer(a, b))
        self.asked.add((i, j))
        self.counts[[i, j]] += 1


class PairChooser:
    """Chooses the batch of pairs asked until the next fit: the prefloop strategy
    through the app's refill path (``choix_random`` asks random pairs; only its model
    differs) or EUBO's top pairs; random pairs fill what the strategy leaves."""

    def __init__(self, strategy: str, features: np.ndarray) -> None:
        self.strategy = strategy
        self.features = features
        name = "random" if strategy == "choix_random" else strategy
        self.prefloop = None if strategy == "botorch_eubo" else get_strategy(name)
        # The refill diversifies every strategy's picks but random's (activelearn.refill).
        self.diversify = name != "random"
        self.fallback = get_strategy("random")
        self.fallbacks = 0

    def choose(self, learner: Learner, judged: Judgments, n: int) -> list[tuple[int, int]]:
        if self.prefloop is None:
            assert isinstance(learner, EuboLearner)
            pairs = learner.select(judged.asked, n)
        else:
            inp = SelectionInput(
                groups=judged.groups,
                excluded=frozenset(judged.asked),
                counts=judged.counts.copy(),
                **_model_inputs(self.strategy, learner),
            )
            picked = self.prefloop.select(inp, 2 * n, judged.rng)
            picked = diversify(picked, self.features, n) if self.diversify else picked[:n]
            pairs = [(p.i, p.j) for p in picked]
        if len(pairs) < n:
            taken = judged.asked | {(min(i, j), max(i, j)) for i, j in pairs}
            inp = SelectionInput(groups=judged.groups, excluded=frozenset(taken))
            extra = self.fallback.select(inp, n - len(pairs), judged.rng)
            self.fallbacks += len(extra)
            pairs += [(p.i, p.j) for p in extra]
        return pairs


def _model_inputs(strategy: str, learner: Learner) -> dict[str, Any]:
    if strategy not in PREFLOOP:
        return {}
    assert isinstance(learner, KindLearner)
    return {name: learner.outputs[name] for name in model_outputs(strategy)}


def run_one(setting: Setting, strategy: str, seed: int, cfg: BenchConfig, pool: Pool) -> dict[str, Any]:
    """One (setting, strategy, seed) run: the regret/τ curve and timings. A peer's
    ``regret_app`` is None (its model has no app posterior; runs before the kernel
    default scored the peers' judgments under the linear posterior there)."""
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    features, utility = make_problem(pool, setting, seed, cfg)
    rng = np.random.default_rng([4, seed, STRATEGIES.index(strategy), setting.stream])
    judged = Judgments(features.shape[0], Annotator(utility, setting, seed, cfg), rng)
    for i, j in start_pairs(features.shape[0], cfg.n_start, seed, setting):
        judged.ask(i, j)
    learner = make_learner(strategy, features, seed, cfg)
    chooser = PairChooser(strategy, features)
    curve: dict[str, list] = {"t": [], "regret": [], "tau": [], "regret_model": [], "regret_app": []}
    select_s: list[float] = []
    fit_s: list[float] = []
    fit_at: list[int] = []

    def fit() -> tuple[float, float, float, float | None]:
        tick = time.perf_counter()
        learner.fit(judged.left, judged.right, judged.outcome)
        fit_s.append(time.perf_counter() - tick)
        fit_at.append(len(judged))
        best, scores = learner.recommend()
        own = round(normalised_regret(utility, best), 6)
        app = (
            round(normalised_regret(utility, app_recommendation(learner, judged, seed)), 6)
            if strategy in PREFLOOP
            else own
        )
        return app if strategy in PREFLOOP else own, round(kendall_tau(scores, utility), 6), own, app

    current = fit()
    due = next_fit(len(judged))
    pending: list[tuple[int, int]] = []
    while True:
        t = len(judged)
        if (t - cfg.n_start) % cfg.eval_every == 0 or t >= cfg.steps:
            for name, value in zip(("t", "regret", "tau", "regret_model", "regret_app"), (t, *current), strict=True):
                curve[name].append(value)
        if t >= cfg.steps:
            break
        if not pending:
            tick = time.perf_counter()
            pending = chooser.choose(learner, judged, min(due, cfg.steps) - t)
            select_s.append(time.perf_counter() - tick)
        judged.ask(*pending.pop(0))
        if len(judged) >= due or len(judged) >= cfg.steps:
            current = fit()
            due = next_fit(len(judged))
            pending = []
    return {
        "setting": setting.key,
        "strategy": strategy,
        "seed": seed,
        **curve,
        "select_seconds_p50": float(np.median(select_s)) if select_s else 0.0,
        "fit_seconds_p50": float(np.median(fit_s)) if fit_s else 0.0,
        "fits": len(fit_s),
        "fit_at": fit_at,
        "fallbacks": chooser.fallbacks,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }


def app_recommendation(learner: Learner, judged: Judgments, seed: int) -> int:
    """The item the app recommends after these judgments: the top of the leaderboard
    under the posterior the app shows researchers (``activelearn.services._recommendation``:
    the model kind's posterior, 256 samples)."""
    assert isinstance(learner, KindLearner)
    samples, method = learner.posterior(np.random.default_rng([5, seed, len(judged)]), RECOMMENDATION_SAMPLES)
    return recommend(judged.groups, samples, method).groups[0].best


def code_version() -> str:
    """The git commit the benchmark runs from, ``+dirty`` when the tree has changes
    outside ``benchmarks/results``."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        # The results folder is the benchmark's own output, not code.
        outside_results = ["--", ".", ":!benchmarks/results"]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", *outside_results], cwd=root, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


# The pools a worker process has loaded (the hh pool takes seconds to read even cached).
_POOLS: dict[tuple[str, str], Pool] = {}


def _worker(job: Job) -> dict[str, Any]:
    setting, strategy, seed, cfg = job
    key = (setting.pool, cfg.digest())
    if key not in _POOLS:
        _POOLS[key] = load_pool(setting.pool, cfg)
    return run_one(setting, strategy, seed, cfg, _POOLS[key])


def load_runs(path: Path, digest: str) -> list[dict]:
    """The runs saved in ``path`` under config ``digest``."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("config_digest") == digest:
                runs.append(row)
    return runs


def run_all(todo: list[Job], runs_path: Path, digest: str, *, workers: int, saved: int) -> None:
    """Run the jobs (in ``workers`` spawned processes when > 1), appending each
    finished run to ``runs_path`` and printing progress."""
    for name in sorted({job[0].pool for job in todo}):
        load_pool(name, todo[0][3])  # embed and fit (or fill the caches) once before the workers start
    run_jobs(
        todo,
        _worker,
        runs_path,
        digest,
        workers=workers,
        saved=saved,
        describe=lambda row: (
            f"{row['setting']} {row['strategy']} seed {row['seed']}: "
            f"regret@T {row['regret'][-1]:.3f} ({row['wall_seconds']:.1f}s)"
        ),
    )


def run_jobs(
    todo: list[Any],
    worker: Callable[[Any], dict[str, Any]],
    runs_path: Path,
    digest: str,
    *,
    workers: int,
    saved: int,
    describe: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """Run ``worker`` on every job (in ``workers`` spawned processes when > 1; it
    must be a module-level function), stamp each finished row with ``digest`` and
    the code version, append it to ``runs_path`` as it finishes, print progress
    with ``describe(row)``, and return the rows."""
    version = code_version()
    print(f"{len(todo)} runs to do ({saved} saved), {workers} workers, code {version}", flush=True)
    started = time.perf_counter()
    if workers > 1:
        # One BLAS thread per worker: runs share the cores instead of oversubscribing them
        # (numpy's linear algebra in a run is 3-5x slower when every worker spawns threads).
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    done = []
    with runs_path.open("a") as sink:
        if executor is None:
            results: Iterable[dict] = (worker(job) for job in todo)
        else:
            results = (f.result() for f in as_completed([executor.submit(worker, job) for job in todo]))
        for k, row in enumerate(results, 1):
            row["config_digest"] = digest
            row["code_version"] = version
            done.append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(f"[{k}/{len(todo)} {time.perf_counter() - started:.0f}s] {describe(row)}", flush=True)
    if executor is not None:
        executor.shutdown()
    return done
