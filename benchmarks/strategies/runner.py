"""One run (setting, strategy, seed) and the runs of a benchmark, in parallel and resumable.

A run starts from the seed's start pairs and asks one pair per step until T
judgments. After each step the model is refitted (warm-started) when the strategy's
choice reads it, and on the evaluation grid the run records the normalised simple
regret of the recommended item and Kendall's τ between the fitted scores and the
hidden utility. Finished runs are appended to a JSONL file as they finish and
skipped on a rerun under the same config digest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from activelearn.strategies import SelectionInput, get_strategy
from benchmarks.strategies.eubo import EuboLearner
from benchmarks.strategies.learners import ChoixLearner, EnsembleLearner, HeadLearner, Learner
from benchmarks.strategies.protocol import (
    ALL_SETTINGS,
    ENSEMBLE,
    PREFLOOP,
    SINGLE_HEAD,
    STRATEGIES,
    Annotator,
    BenchConfig,
    Setting,
    load_pool,
    make_problem,
    model_outputs,
    start_pairs,
)
from models_runtime.metrics import kendall_tau
from models_runtime.simulate import normalised_regret

Job = tuple[Setting, str, int, BenchConfig]


def make_learner(strategy: str, features: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> Learner:
    """The model ``strategy`` is run with (see ``learners`` and ``eubo``)."""
    if strategy in SINGLE_HEAD:
        return HeadLearner(features, setting, seed, cfg)
    if strategy in ENSEMBLE:
        return EnsembleLearner(features, setting, seed, cfg)
    if strategy == "choix_random":
        return ChoixLearner(features.shape[0], cfg)
    return EuboLearner(features, seed, cfg)


def drives_selection(strategy: str) -> bool:
    """Whether the strategy's choice reads the model, so it is refitted every step;
    the others fit only on the evaluation grid, which changes nothing they select."""
    if strategy in PREFLOOP:
        return bool(model_outputs(strategy))
    return strategy == "botorch_eubo"


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
        # Random presentation order, as an interface would; it only matters with position bias.
        a, b = (i, j) if self.rng.random() < 0.5 else (j, i)
        self.left.append(a)
        self.right.append(b)
        self.outcome.append(self.annotator.answer(a, b))
        self.asked.add((i, j))
        self.counts[[i, j]] += 1


class PairChooser:
    """Chooses the next pair for ``strategy``: the prefloop strategy (``choix_random``
    asks random pairs; only its model differs) or EUBO, falling back to a random
    pair when the strategy has nothing left to offer."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        name = "random" if strategy == "choix_random" else strategy
        self.prefloop = None if strategy == "botorch_eubo" else get_strategy(name)
        self.fallback = get_strategy("random")
        self.fallbacks = 0

    def choose(self, learner: Learner, judged: Judgments) -> tuple[int, int]:
        pair: tuple[int, int] | None = None
        if self.prefloop is None:
            assert isinstance(learner, EuboLearner)
            pair = learner.select(judged.asked, judged.rng)
        else:
            kwargs = _model_inputs(self.strategy, learner)
            inp = SelectionInput(
                groups=judged.groups, excluded=frozenset(judged.asked), counts=judged.counts.copy(), **kwargs
            )
            picked = self.prefloop.select(inp, 1, judged.rng)
            if picked:
                pair = (picked[0].i, picked[0].j)
        if pair is None:
            self.fallbacks += 1
            inp = SelectionInput(groups=judged.groups, excluded=frozenset(judged.asked))
            picked = self.fallback.select(inp, 1, judged.rng)
            pair = (picked[0].i, picked[0].j)
        return pair


def _model_inputs(strategy: str, learner: Learner) -> dict[str, Any]:
    if strategy not in PREFLOOP:
        return {}
    out: dict[str, Any] = {}
    for name in model_outputs(strategy):
        if name == "scores":
            out["scores"] = learner.scores
        elif name == "gradients":
            assert isinstance(learner, HeadLearner)
            out["gradients"] = learner.gradients()
        else:
            assert isinstance(learner, EnsembleLearner)
            out["member_scores"] = learner.members
    return out


def run_one(setting: Setting, strategy: str, seed: int, cfg: BenchConfig, pool: np.ndarray) -> dict[str, Any]:
    """One (setting, strategy, seed) run: the regret/τ curve and timings."""
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    features, utility = make_problem(pool, setting, seed, cfg)
    rng = np.random.default_rng([4, seed, STRATEGIES.index(strategy), ALL_SETTINGS.index(setting)])
    judged = Judgments(features.shape[0], Annotator(utility, setting, seed, cfg), rng)
    for i, j in start_pairs(features.shape[0], cfg.n_start, seed, setting):
        judged.ask(i, j)
    learner = make_learner(strategy, features, setting, seed, cfg)
    chooser = PairChooser(strategy)
    refits_every_step = drives_selection(strategy)
    curve: dict[str, list] = {"t": [], "regret": [], "tau": []}
    select_s: list[float] = []
    fit_s: list[float] = []
    while True:
        t = len(judged)
        on_grid = (t - cfg.n_start) % cfg.eval_every == 0 or t >= cfg.steps
        due = refits_every_step and ((t - cfg.n_start) % cfg.refit_every == 0 or not fit_s)
        if due or on_grid:
            tick = time.perf_counter()
            learner.fit(judged.left, judged.right, judged.outcome)
            fit_s.append(time.perf_counter() - tick)
        if on_grid:
            best, scores = learner.recommend()
            curve["t"].append(t)
            curve["regret"].append(round(normalised_regret(utility, best), 6))
            curve["tau"].append(round(kendall_tau(scores, utility), 6))
        if t >= cfg.steps:
            break
        tick = time.perf_counter()
        pair = chooser.choose(learner, judged)
        select_s.append(time.perf_counter() - tick)
        judged.ask(*pair)
    return {
        "setting": setting.key,
        "strategy": strategy,
        "seed": seed,
        **curve,
        "select_seconds_p50": float(np.median(select_s)) if select_s else 0.0,
        "fit_seconds_p50": float(np.median(fit_s)) if fit_s else 0.0,
        "fits": len(fit_s),
        "fallbacks": chooser.fallbacks,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }


def _worker(job: Job) -> dict[str, Any]:
    setting, strategy, seed, cfg = job
    return run_one(setting, strategy, seed, cfg, load_pool(cfg))


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
    load_pool(todo[0][3])  # embed (or load the cache) once before the workers start
    print(f"{len(todo)} runs to do ({saved} saved), {workers} workers", flush=True)
    started = time.perf_counter()
    executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    with runs_path.open("a") as sink:
        if executor is None:
            results: Iterable[dict] = (_worker(job) for job in todo)
        else:
            results = (f.result() for f in as_completed([executor.submit(_worker, job) for job in todo]))
        for k, row in enumerate(results, 1):
            row["config_digest"] = digest
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(
                f"[{k}/{len(todo)} {time.perf_counter() - started:.0f}s] {row['setting']} {row['strategy']} "
                f"seed {row['seed']}: regret@T {row['regret'][-1]:.3f} ({row['wall_seconds']:.1f}s)",
                flush=True,
            )
    if executor is not None:
        executor.shutdown()
