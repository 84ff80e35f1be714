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
annotator noise and ratios are paired by seed.

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

Strategies: the prefloop ones (``activelearn.strategies``) driven with the real
``models_runtime`` models (single MLP head for ``uncertainty``/``apohf`` and for the
recommendation of ``random``/``least_compared``; anchored ensemble for
``double_ts``/``infomax``), and two peers: ``botorch_eubo`` (BoTorch ``PairwiseGP`` on
PCA-reduced features + analytic EUBO over candidate pairs) and ``choix_random``
(random pairs, non-contextual Bradley–Terry by choix's ILSR, recommendation = best
compared item). See ``BenchConfig`` for every knob and ``write_report`` for the
statistics.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

PREFLOOP = ("random", "least_compared", "uncertainty", "apohf", "double_ts", "infomax")
PEERS = ("botorch_eubo", "choix_random")
STRATEGIES = PREFLOOP + PEERS
SINGLE_HEAD = ("random", "least_compared", "uncertainty", "apohf")
ENSEMBLE = ("double_ts", "infomax")
FAMILIES = ("linear", "mlp")
SCALES = (10.0, 3.0)
FLIPS = (0.0, 0.1)


@dataclass(frozen=True)
class Setting:
    family: str
    scale: float
    eps: float

    @property
    def key(self) -> str:
        return f"{self.family}_s{self.scale:g}_eps{self.eps:g}"


ALL_SETTINGS = tuple(Setting(f, s, e) for f in FAMILIES for s in SCALES for e in FLIPS)


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of the protocol. Model sizes are smaller than the app's defaults
    (hidden 64, 10 members, 300/200 epochs) to fit 8 settings x 20 seeds x 8
    strategies x 145 refits on a 2-core machine; the scale section uses the defaults."""

    n_items: int = 500
    steps: int = 150  # T: judgments at the end, start pairs included
    n_start: int = 5
    pool_size: int = 2_000
    eval_every: int = 5  # regret curve grid (T always included); see the module docstring
    refit_every: int = 1  # model strategies refit every k steps; 1 = the protocol
    hidden: int = 32  # benchmark reward head / ensemble member width
    max_epochs: int = 100
    patience: int = 10
    n_members: int = 8
    prior_scale: float = 0.3
    anchor_strength: float = 0.1
    utility_hidden: int = 32  # width of the hidden MLP utility
    position_bias: float = 0.0
    gp_dim: int = 16  # PCA dimensions for the BoTorch peer
    eubo_random_pairs: int = 0  # random candidate pairs besides (best, any)
    choix_alpha: float = 0.01

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


QUICK = BenchConfig(n_items=60, steps=30, pool_size=2_000, eval_every=5, hidden=16, max_epochs=40, n_members=4)


# -- the problem ---------------------------------------------------------------------------


def load_pool(cfg: BenchConfig) -> np.ndarray:
    from benchmarks.pools import embedded_pool

    return embedded_pool(cfg.pool_size)[1]


def make_problem(pool: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """The seed's N candidates (rows of ``pool``) and their standardised hidden utility;
    the same for every strategy and for every s/ε of one family."""
    from models_runtime.simulate import hidden_utility

    rng = np.random.default_rng([1, seed, FAMILIES.index(setting.family)])
    idx = np.sort(rng.choice(pool.shape[0], size=cfg.n_items, replace=False))
    features = np.ascontiguousarray(pool[idx], dtype=np.float32)
    return features, hidden_utility(features, setting.family, rng, hidden=cfg.utility_hidden)


def start_pairs(n_items: int, n: int, seed: int, setting: Setting) -> list[tuple[int, int]]:
    rng = np.random.default_rng([2, seed, ALL_SETTINGS.index(setting) if setting in ALL_SETTINGS else 99])
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n:
        i, j = rng.choice(n_items, size=2, replace=False)
        pairs.add((min(int(i), int(j)), max(int(i), int(j))))
    return sorted(pairs)


class Annotator:
    """The simulated annotator with common random numbers: the uniform that decides a
    pair's answer depends only on (seed, setting, pair), not on who asks."""

    def __init__(self, utility: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> None:
        from models_runtime.simulate import PreferenceOracle

        self.oracle = PreferenceOracle(
            utility, scale=setting.scale, label_flip_rate=setting.eps, position_bias=cfg.position_bias
        )
        self.key = [3, seed, int(setting.scale * 10), int(setting.eps * 100), FAMILIES.index(setting.family)]

    def answer(self, i: int, j: int) -> float:
        rng = np.random.default_rng([*self.key, i, j])
        return float(self.oracle.answer_pairs(np.array([i]), np.array([j]), rng)[0])


def regret(utility: np.ndarray, best: int) -> float:
    top = float(utility.max())
    return (top - float(utility[best])) / (top - float(utility.mean()))


# -- learners --------------------------------------------------------------------------------


class Learner:
    """Fits a model on the judgments so far and exposes what strategies read."""

    scores: np.ndarray | None = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        raise NotImplementedError

    def recommend(self) -> tuple[int, np.ndarray]:
        assert self.scores is not None
        return int(np.argmax(self.scores)), self.scores


class HeadLearner(Learner):
    def __init__(self, features: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> None:
        from models_runtime.preferences import LikelihoodConfig
        from models_runtime.reward import RewardModelConfig

        self.features = features
        self.config = RewardModelConfig(
            head="mlp",
            hidden=cfg.hidden,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            seed=seed,
            device="cpu",
            likelihood=LikelihoodConfig(label_flip_rate=setting.eps),
        )
        self.model: Any = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        from models_runtime.preferences import PreferenceData
        from models_runtime.reward import fit_reward_model

        data = PreferenceData.from_pairs(np.array(left), np.array(right), np.array(outcome, dtype=np.float32))
        init = self.model.state_dict() if self.model is not None else None
        self.model = fit_reward_model(self.features, data, self.config, init_state=init).model
        self.scores = self.model.scores(self.features)
        self.left, self.right = np.array(left), np.array(right)

    def gradients(self) -> Any:
        from models_runtime.gradients import GradientFeatureSource

        return GradientFeatureSource(self.model, self.features, self.left, self.right)


class EnsembleLearner(Learner):
    def __init__(self, features: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> None:
        from models_runtime.ensemble import EnsembleConfig
        from models_runtime.preferences import LikelihoodConfig

        self.features = features
        self.config = EnsembleConfig(
            n_members=cfg.n_members,
            head="mlp",
            hidden=cfg.hidden,
            anchor_strength=cfg.anchor_strength,
            prior_scale=cfg.prior_scale,
            bootstrap=True,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            seed=seed,
            device="cpu",
            likelihood=LikelihoodConfig(label_flip_rate=setting.eps),
        )
        self.model: Any = None
        self.members: np.ndarray | None = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        from models_runtime.ensemble import fit_ensemble
        from models_runtime.preferences import PreferenceData

        data = PreferenceData.from_pairs(np.array(left), np.array(right), np.array(outcome, dtype=np.float32))
        init = self.model.state_dict() if self.model is not None else None
        self.model = fit_ensemble(self.features, data, self.config, init_state=init).model
        self.members = self.model.member_scores(self.features)
        self.scores = self.members.mean(axis=0)


class ChoixLearner(Learner):
    """Non-contextual Bradley–Terry (choix ILSR with a small ridge ``alpha``) over the
    compared items; never-compared items score the mean (0) and are not recommended."""

    def __init__(self, n_items: int, cfg: BenchConfig) -> None:
        self.n_items = n_items
        self.alpha = cfg.choix_alpha

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        import choix

        items = np.unique(np.array(left + right))
        where = {int(v): k for k, v in enumerate(items)}
        data = [
            (where[a], where[b]) if o > 0.5 else (where[b], where[a])
            for a, b, o in zip(left, right, outcome, strict=True)
        ]
        strength = choix.ilsr_pairwise(items.size, data, alpha=self.alpha)
        self.scores = np.zeros(self.n_items)
        self.scores[items] = strength - strength.mean()
        self.best = int(items[np.argmax(strength)])

    def recommend(self) -> tuple[int, np.ndarray]:
        assert self.scores is not None
        return self.best, self.scores


class EuboLearner(Learner):
    """BoTorch PairwiseGP (probit likelihood, Laplace approximation, default
    Scale(RBF) kernel with its priors, hyper-parameters refit each step) on features
    PCA-reduced to ``gp_dim`` and min-max scaled to the unit cube; datapoints are the
    compared items only. EUBO is evaluated on the pairs (current best, x) for every x
    plus ``eubo_random_pairs`` random pairs, never on an asked pair."""

    def __init__(self, features: np.ndarray, seed: int, cfg: BenchConfig) -> None:
        x = features.astype(np.float64) - features.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        z = x @ vt[: cfg.gp_dim].T
        z = (z - z.min(axis=0)) / np.maximum(z.max(axis=0) - z.min(axis=0), 1e-12)
        self.z = z
        self.cfg = cfg
        self.seed = seed
        self.model: Any = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import PairwiseGP
        from botorch.models.pairwise_gp import PairwiseLaplaceMarginalLogLikelihood

        items = np.unique(np.array(left + right))
        where = {int(v): k for k, v in enumerate(items)}
        comps = [
            (where[a], where[b]) if o > 0.5 else (where[b], where[a])
            for a, b, o in zip(left, right, outcome, strict=True)
        ]
        torch.manual_seed(self.seed)
        model = PairwiseGP(torch.from_numpy(self.z[items]), torch.tensor(comps, dtype=torch.long))
        if self.model is not None:
            # Warm start: the previous step's kernel hyper-parameters are the initial point.
            model.covar_module.load_state_dict(self.model.covar_module.state_dict())
        mll = PairwiseLaplaceMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            # A failed or early-stopped hyper-parameter fit keeps its last point.
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(mll)
        self.model = model
        with torch.no_grad():
            self.scores = model.posterior(torch.from_numpy(self.z)).mean.squeeze(-1).numpy().astype(np.float64)

    def select(self, excluded: set[tuple[int, int]], rng: np.random.Generator) -> tuple[int, int] | None:
        import torch
        from botorch.acquisition.preference import AnalyticExpectedUtilityOfBestOption

        assert self.scores is not None
        n = self.z.shape[0]
        best = int(np.argmax(self.scores))
        others = np.delete(np.arange(n), best)
        a = np.concatenate([np.full(others.size, best), rng.integers(0, n, self.cfg.eubo_random_pairs)])
        b = np.concatenate([others, rng.integers(0, n, self.cfg.eubo_random_pairs)])
        keep = [k for k in range(a.size) if a[k] != b[k] and (min(a[k], b[k]), max(a[k], b[k])) not in excluded]
        if not keep:
            return None
        a, b = a[keep], b[keep]
        acq = AnalyticExpectedUtilityOfBestOption(pref_model=self.model)
        x = torch.from_numpy(np.stack([self.z[a], self.z[b]], axis=1))
        with torch.no_grad():
            values = acq(x).numpy()
        k = int(np.argmax(values))
        return int(a[k]), int(b[k])


# -- one run ---------------------------------------------------------------------------------


def run_one(setting: Setting, strategy: str, seed: int, cfg: BenchConfig, pool: np.ndarray) -> dict[str, Any]:
    """One (setting, strategy, seed) run: the regret/τ curve and timings."""
    import torch

    from activelearn.strategies import SelectionInput, get_strategy
    from models_runtime.metrics import kendall_tau

    torch.set_num_threads(1)
    started = time.perf_counter()
    features, utility = make_problem(pool, setting, seed, cfg)
    n = features.shape[0]
    annotator = Annotator(utility, setting, seed, cfg)
    strat_rng = np.random.default_rng([4, seed, STRATEGIES.index(strategy), ALL_SETTINGS.index(setting)])
    left: list[int] = []
    right: list[int] = []
    outcome: list[float] = []
    asked: set[tuple[int, int]] = set()
    counts = np.zeros(n, dtype=np.int64)

    def ask(i: int, j: int) -> None:
        i, j = min(i, j), max(i, j)
        # Random presentation order, as an interface would; it only matters with position bias.
        a, b = (i, j) if strat_rng.random() < 0.5 else (j, i)
        left.append(a)
        right.append(b)
        outcome.append(annotator.answer(a, b))
        asked.add((i, j))
        counts[[i, j]] += 1

    for i, j in start_pairs(n, cfg.n_start, seed, setting):
        ask(i, j)

    learner: Learner
    if strategy in SINGLE_HEAD:
        learner = HeadLearner(features, setting, seed, cfg)
    elif strategy in ENSEMBLE:
        learner = EnsembleLearner(features, setting, seed, cfg)
    elif strategy == "choix_random":
        learner = ChoixLearner(n, cfg)
    else:
        learner = EuboLearner(features, seed, cfg)
    drives_selection = strategy not in ("random", "least_compared", "choix_random")
    # choix_random asks random pairs; only its model (and so its recommendation) differs.
    name = "random" if strategy == "choix_random" else strategy
    prefloop = None if strategy == "botorch_eubo" else get_strategy(name)
    fallback = get_strategy("random")

    curve_t: list[int] = []
    curve_regret: list[float] = []
    curve_tau: list[float] = []
    select_s: list[float] = []
    fit_s: list[float] = []
    fallbacks = 0
    last_fit = -1
    groups = np.zeros(n, dtype=np.int64)
    while True:
        t = len(left)
        on_grid = (t - cfg.n_start) % cfg.eval_every == 0 or t >= cfg.steps
        due = drives_selection and (t - cfg.n_start) % cfg.refit_every == 0
        if due or on_grid or (last_fit < 0 and drives_selection):
            tick = time.perf_counter()
            learner.fit(left, right, outcome)
            fit_s.append(time.perf_counter() - tick)
            last_fit = t
        if on_grid:
            best, scores = learner.recommend()
            curve_t.append(t)
            curve_regret.append(regret(utility, best))
            curve_tau.append(kendall_tau(scores, utility))
        if t >= cfg.steps:
            break
        tick = time.perf_counter()
        pair: tuple[int, int] | None = None
        if strategy == "botorch_eubo":
            assert isinstance(learner, EuboLearner)
            pair = learner.select(asked, strat_rng)
        else:
            assert prefloop is not None
            kwargs: dict[str, Any] = {}
            if strategy in ("uncertainty", "apohf"):
                kwargs["scores"] = learner.scores
            if strategy == "apohf":
                assert isinstance(learner, HeadLearner)
                kwargs["gradients"] = learner.gradients()
            if strategy in ENSEMBLE:
                assert isinstance(learner, EnsembleLearner)
                kwargs["member_scores"] = learner.members
            inp = SelectionInput(groups=groups, excluded=frozenset(asked), counts=counts.copy(), **kwargs)
            picked = prefloop.select(inp, 1, strat_rng)
            if picked:
                pair = (picked[0].i, picked[0].j)
        if pair is None:
            fallbacks += 1
            picked = fallback.select(SelectionInput(groups=groups, excluded=frozenset(asked)), 1, strat_rng)
            pair = (picked[0].i, picked[0].j)
        select_s.append(time.perf_counter() - tick)
        ask(*pair)

    return {
        "setting": setting.key,
        "strategy": strategy,
        "seed": seed,
        "t": curve_t,
        "regret": [round(r, 6) for r in curve_regret],
        "tau": [round(x, 6) for x in curve_tau],
        "select_seconds_p50": float(np.median(select_s)) if select_s else 0.0,
        "fit_seconds_p50": float(np.median(fit_s)) if fit_s else 0.0,
        "fits": len(fit_s),
        "fallbacks": fallbacks,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }


def _worker(args: tuple[Setting, str, int, BenchConfig]) -> dict[str, Any]:
    setting, strategy, seed, cfg = args
    return run_one(setting, strategy, seed, cfg, load_pool(cfg))


# -- statistics and report ---------------------------------------------------------------


def paired_ratio(values: np.ndarray, baseline: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> dict:
    """Ratio of medians over seed-paired runs, median(strategy) / median(random), with a
    90% percentile bootstrap interval that resamples the pairs (not the two sides
    separately)."""

    def ratio(a: np.ndarray, b: np.ndarray) -> float:
        mb = float(np.median(b))
        ma = float(np.median(a))
        if mb == 0.0:
            return 1.0 if ma == 0.0 else math.inf
        return ma / mb

    point = ratio(values, baseline)
    idx = rng.integers(0, values.size, (n_boot, values.size))
    boots = np.array([ratio(values[k], baseline[k]) for k in idx])
    lo, hi = np.percentile(boots, [5, 95])
    return {"ratio_to_random": _num(point), "ratio_ci90": [_num(lo), _num(hi)]}


def _num(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else round(float(x), 4)


def _block(runs: list[dict], strategy: str, rng: np.random.Generator) -> dict[str, Any] | None:
    mine = {(r["setting"], r["seed"]): r for r in runs if r["strategy"] == strategy}
    base = {(r["setting"], r["seed"]): r for r in runs if r["strategy"] == "random"}
    if not mine:
        return None
    regrets = np.array([r["regret"][-1] for r in mine.values()])
    taus = np.array([r["tau"][-1] for r in mine.values()])
    out: dict[str, Any] = {
        "median_regret_at_T": round(float(np.median(regrets)), 4),
        "regret_iqr_at_T": [round(float(q), 4) for q in np.percentile(regrets, [25, 75])],
        "mean_regret_at_T": round(float(regrets.mean()), 4),
        "median_tau_at_T": round(float(np.median(taus)), 4),
        "select_seconds_p50": round(float(np.median([r["select_seconds_p50"] for r in mine.values()])), 5),
        "fit_seconds_p50": round(float(np.median([r["fit_seconds_p50"] for r in mine.values()])), 5),
        "runs": len(mine),
    }
    keys = sorted(set(mine) & set(base))
    if keys:
        a = np.array([mine[k]["regret"][-1] for k in keys])
        b = np.array([base[k]["regret"][-1] for k in keys])
        out |= paired_ratio(a, b, rng) | {"paired_runs": len(keys)}
    else:
        out |= {"ratio_to_random": None, "ratio_ci90": [None, None], "paired_runs": 0}
    return out


def summarise(runs: list[dict], strategies: Iterable[str]) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    summary = {s: b for s in strategies if (b := _block(runs, s, rng)) is not None}
    settings: dict[str, dict] = {}
    for key in sorted({r["setting"] for r in runs}):
        sub = [r for r in runs if r["setting"] == key]
        settings[key] = {s: b for s in strategies if (b := _block(sub, s, rng)) is not None}
    return summary, settings


def _curves(runs: list[dict], strategy: str) -> tuple[np.ndarray, np.ndarray] | None:
    mine = [r for r in runs if r["strategy"] == strategy]
    if not mine:
        return None
    length = min(len(r["t"]) for r in mine)
    return np.array(mine[0]["t"][:length]), np.array([r["regret"][:length] for r in mine])


def plot(runs: list[dict], strategies: list[str], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [s.key for s in ALL_SETTINGS if any(r["setting"] == s.key for r in runs)]
    colours = {s: plt.get_cmap("tab10")(k) for k, s in enumerate(STRATEGIES)}
    written = []

    def panel(ax: Any, sub: list[dict], title: str) -> None:
        for s in strategies:
            got = _curves(sub, s)
            if got is None:
                continue
            t, r = got
            q25, med, q75 = np.percentile(r, [25, 50, 75], axis=0)
            ax.plot(t, med, label=s, color=colours[s], lw=1.6)
            ax.fill_between(t, q25, q75, color=colours[s], alpha=0.12)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("judgments")
        ax.set_ylabel("normalised simple regret")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)

    cols = min(4, max(1, len(keys)))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        sub = [r for r in runs if r["setting"] == key]
        panel(ax, sub, f"{key} ({len({r['seed'] for r in sub})} seeds)")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Regret vs judgments: median over seeds, IQR band", fontsize=10)
    fig.tight_layout()
    path = out_dir / "strategies_regret_by_setting.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    panel(ax, runs, "all settings pooled")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "strategies_regret.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)
    return written


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [
        "# Query-strategy benchmark",
        "",
        f"Generated by `python -m benchmarks.strategies` ({results['generated']}), machine: {results['machine']}.",
        f"Seeds: {cfg['seeds']}; settings: {len(results['settings'])}; N = {cfg['n_items']}, "
        f"T = {cfg['steps']} ({cfg['n_start']} random start pairs)."
        + (" **Reduced run** (fewer seeds than the ≥ 20 the protocol asks for)." if len(cfg["seeds"]) < 20 else ""),
        "",
        "Ratios are the ratio of medians over seed-paired runs (median regret of the strategy / median regret "
        "of random on the same setting and seed), with a 90% bootstrap interval over the pairs.",
        "",
        "## Pooled over all settings",
        "",
        "| strategy | median regret at T | IQR | ratio to random | 90% CI | median τ at T | select s (p50) "
        "| fit s (p50) | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, b in results["summary"].items():
        ci = b["ratio_ci90"]
        lines.append(
            f"| {s} | {b['median_regret_at_T']:.3f} | {b['regret_iqr_at_T'][0]:.3f}–{b['regret_iqr_at_T'][1]:.3f} "
            f"| {_fmt(b['ratio_to_random'])} | [{_fmt(ci[0])}, {_fmt(ci[1])}] | {b['median_tau_at_T']:.3f} "
            f"| {b['select_seconds_p50']:.4f} | {b['fit_seconds_p50']:.3f} | {b['runs']} |"
        )
    strategies = list(results["summary"])
    lines += ["", "## Median regret at T by setting", "", "| setting | " + " | ".join(strategies) + " |"]
    lines.append("|---" * (len(strategies) + 1) + "|")
    for key, block in results["settings"].items():
        cells = [f"{block[s]['median_regret_at_T']:.3f}" if s in block else "–" for s in strategies]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    for name, t in results["targets"].items():
        lines.append(f"- {name}: {t['value']} → **{'met' if t['met'] else 'not met'}** ({t['detail']})")
    if results.get("scale"):
        sc = results["scale"]
        lines += [
            "",
            f"## Scale: batch of {sc['batch']} among N = {sc['N']:,} ({sc['features']})",
            "",
            "| strategy | groups | model | pairs | prepare s | select s | total s | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in sc["rows"]:
            lines.append(
                f"| {row['strategy']} | {row['groups']} | {row['model']} | {row['pairs']} "
                f"| {row['prepare_seconds']:.2f} | {row['select_seconds']:.2f} | {row['total_seconds']:.2f} "
                f"| {row['peak_rss_mb']:.0f} |"
            )
        lines.append("")
        lines.append(sc["note"])
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in results.get("plots", [])), ""]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def targets(summary: dict, scale: dict | None) -> dict:
    out: dict[str, dict] = {}
    for s in ("apohf", "double_ts"):
        if s in summary and summary[s].get("ratio_to_random") is not None:
            r = summary[s]["ratio_to_random"]
            hi = summary[s]["ratio_ci90"][1]
            sure = hi is not None and hi <= 0.5
            out[f"{s} ≤ 0.5 × random (pooled median regret at T)"] = {
                "value": r,
                "met": r <= 0.5,
                "detail": f"ratio {r:.3f}, 90% CI {summary[s]['ratio_ci90']}: "
                + ("upper bound ≤ 0.5" if sure else "point estimate only, the interval still reaches above 0.5"),
            }
    if "botorch_eubo" in summary:
        ours = {s: summary[s]["median_regret_at_T"] for s in PREFLOOP if s in summary and s != "random"}
        if ours:
            best = min(ours, key=ours.get)
            eubo = summary["botorch_eubo"]["median_regret_at_T"]
            out["best prefloop strategy no worse than BoTorch EUBO"] = {
                "value": f"{best} {ours[best]:.3f} vs EUBO {eubo:.3f}",
                "met": ours[best] <= eubo,
                "detail": "pooled median regret at T",
            }
    if scale:
        worst = max(scale["rows"], key=lambda r: r["total_seconds"])
        peak = max(r["peak_rss_mb"] for r in scale["rows"])
        out["batch of 32 among 50,000 in < 2 s and < 4 GB (every prefloop strategy)"] = {
            "value": f"slowest {worst['strategy']} ({worst['groups']}) {worst['total_seconds']:.2f} s, "
            f"peak RSS {peak:.0f} MB",
            "met": worst["total_seconds"] < 2.0 and peak < 4096,
            "detail": "total = prepare (scores, member scores, gradient source) + select",
        }
    return out


# -- scale -------------------------------------------------------------------------------------


def _scale_worker(args: tuple[str, int, int, int]) -> dict[str, Any]:
    """Time one prefloop strategy choosing ``batch`` pairs among ``n`` candidates with the
    app's default model types and sizes, in a fresh process so peak RSS is its own."""
    strategy, n, batch, n_groups = args
    import torch

    from activelearn.strategies import SelectionInput, get_strategy
    from benchmarks.pools import embedded_pool, scale_features
    from models_runtime.ensemble import EnsembleConfig, fit_ensemble
    from models_runtime.gradients import GradientFeatureSource
    from models_runtime.preferences import PreferenceData
    from models_runtime.reward import RewardModelConfig, fit_reward_model

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(7)
    features = scale_features(embedded_pool(2_000)[1], n, rng)
    groups = np.sort(rng.integers(0, n_groups, n)) if n_groups > 1 else np.zeros(n, dtype=np.int64)
    # 1,000 judged pairs inside groups, as a study would have after a while.
    left = rng.integers(0, n, 1_000)
    right = np.array([rng.choice(np.flatnonzero(groups == groups[i])) for i in left])
    ok = left != right
    left, right = left[ok], right[ok]
    data = PreferenceData.from_pairs(left, right, (rng.random(left.size) < 0.5).astype(np.float32))
    excluded = frozenset((min(a, b), max(a, b)) for a, b in zip(left.tolist(), right.tolist(), strict=True))
    counts = np.bincount(np.concatenate([left, right]), minlength=n)
    if strategy in ENSEMBLE:
        model = fit_ensemble(features, data, EnsembleConfig(max_epochs=5, device="cpu")).model
        label = f"ensemble {model.n_members}×MLP{model.config.hidden}"
    else:
        model = fit_reward_model(features, data, RewardModelConfig(max_epochs=5, device="cpu")).model
        label = f"MLP head {model.config.hidden}"
    tick = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if strategy in ENSEMBLE:
        kwargs["member_scores"] = model.member_scores(features)
    elif strategy != "random" and strategy != "least_compared":
        kwargs["scores"] = model.scores(features)
    if strategy == "apohf":
        kwargs["gradients"] = GradientFeatureSource(model, features, left, right)
    inp = SelectionInput(groups=groups, excluded=excluded, counts=counts, **kwargs)
    prepare = time.perf_counter() - tick
    tick = time.perf_counter()
    picked = get_strategy(strategy).select(inp, batch, np.random.default_rng(0))
    select = time.perf_counter() - tick
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "strategy": strategy,
        "groups": "one group" if n_groups == 1 else f"{n_groups} groups",
        "model": label if strategy not in ("random", "least_compared") else "none",
        "pairs": len(picked),
        "prepare_seconds": round(prepare, 3),
        "select_seconds": round(select, 3),
        "total_seconds": round(prepare + select, 3),
        "peak_rss_mb": round(peak, 1),
    }


def run_scale(n: int, batch: int, group_options: tuple[int, ...]) -> dict[str, Any]:
    rows = []
    ctx = get_context("spawn")
    for n_groups in group_options:
        for strategy in PREFLOOP:
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                row = pool.submit(_scale_worker, (strategy, n, batch, n_groups)).result()
            print(f"scale {row}", flush=True)
            rows.append(row)
    return {
        "N": n,
        "batch": batch,
        "features": "384-d: mixtures of real MiniLM embeddings plus noise (benchmarks.pools.scale_features)",
        "select_seconds": {f"{r['strategy']} ({r['groups']})": r["total_seconds"] for r in rows},
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "rows": rows,
        "note": "Timed on the shared 2-core CPU machine. prepare = the model's scores / member scores over all N "
        "and building APOHF's gradient source "
        "(design from 1,000 judged pairs); select = the strategy's select() for the batch. Models have the app's "
        "default sizes (MLP head hidden 64; ensemble 10 × hidden 64), torch on all cores; each strategy runs in "
        "a fresh process, so peak RSS includes the Python/torch baseline (~0.7 GB).",
    }


# -- driver ------------------------------------------------------------------------------------


def machine() -> str:
    import torch

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def load_runs(path: Path, digest: str) -> list[dict]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("config_digest") == digest:
                runs.append(row)
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds (0..seeds-1)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--settings", default="all", help="comma-separated keys like linear_s10_eps0, or 'all'")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--steps", type=int, help="T (judgments at the end, start pairs included)")
    parser.add_argument("--n-items", type=int)
    parser.add_argument("--refit-every", type=int, help="refit model strategies every k steps (default 1)")
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (figures not comparable)")
    parser.add_argument("--scale", action="store_true", help="also run the N=50,000 scale section")
    parser.add_argument("--scale-only", action="store_true")
    parser.add_argument("--scale-n", type=int, default=50_000)
    parser.add_argument("--report-only", action="store_true", help="only rebuild outputs from saved runs")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else BenchConfig()
    overrides = {
        k: v
        for k, v in {
            "steps": args.steps,
            "n_items": args.n_items,
            "refit_every": args.refit_every,
            "eval_every": args.eval_every,
        }.items()
        if v is not None
    }
    cfg = dataclasses.replace(cfg, **overrides)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    if "random" not in strategies:
        strategies.insert(0, "random")  # ratios need the paired baseline
    by_key = {s.key: s for s in ALL_SETTINGS}
    if args.settings == "all":
        settings = list(ALL_SETTINGS)
    else:
        try:
            settings = [by_key[k.strip()] for k in args.settings.split(",")]
        except KeyError as exc:
            parser.error(f"unknown setting {exc}; known: {', '.join(by_key)}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    out_dir: Path = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "strategies_quick" if args.quick else "strategies"
    runs_path = out_dir / f"{tag}_runs.jsonl"
    digest = cfg.digest()

    runs: list[dict] = []
    if not args.scale_only:
        saved = load_runs(runs_path, digest)
        done = {(r["setting"], r["strategy"], r["seed"]) for r in saved}
        todo = [
            (setting, s, seed, cfg)
            for seed in seeds
            for setting in settings
            for s in strategies
            if (setting.key, s, seed) not in done
        ]
        if not args.report_only and todo:
            load_pool(cfg)  # embed (or load the cache) once before the workers start
            print(f"{len(todo)} runs to do ({len(done)} saved), {args.workers} workers", flush=True)
            started = time.perf_counter()
            with runs_path.open("a") as sink:
                if args.workers <= 1:
                    results: Iterable[dict] = (_worker(job) for job in todo)
                else:
                    executor = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
                    futures = [executor.submit(_worker, job) for job in todo]
                    results = (f.result() for f in as_completed(futures))
                for k, row in enumerate(results, 1):
                    row["config_digest"] = digest
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(
                        f"[{k}/{len(todo)} {time.perf_counter() - started:.0f}s] {row['setting']} {row['strategy']} "
                        f"seed {row['seed']}: regret@T {row['regret'][-1]:.3f} ({row['wall_seconds']:.1f}s)",
                        flush=True,
                    )
                if args.workers > 1:
                    executor.shutdown()
        wanted = {(s.key, st, seed) for s in settings for st in strategies for seed in seeds}
        runs = [r for r in load_runs(runs_path, digest) if (r["setting"], r["strategy"], r["seed"]) in wanted]

    json_path = out_dir / f"{tag}.json"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    scale = previous.get("scale")
    if args.scale or args.scale_only:
        scale = run_scale(args.scale_n, 32, (1, 500))
    if args.scale_only and previous:
        results = previous | {"scale": scale}
    else:
        summary, per_setting = summarise(runs, strategies)
        results = {
            "config": dataclasses.asdict(cfg)
            | {
                "seeds": sorted({r["seed"] for r in runs}),
                "settings": [s.key for s in settings],
                "strategies": strategies,
                "config_digest": digest,
                "ratio": "ratio of medians over seed-paired runs: median_s(regret_T) / median_random(regret_T); "
                "90% percentile bootstrap over the pairs (2,000 resamples)",
                "recommendation": "argmax of the fitted (mean) utility over all N; choix: best compared item",
                "models": {
                    "single_head": f"RewardModelConfig(head='mlp', hidden={cfg.hidden}, max_epochs={cfg.max_epochs}, "
                    f"patience={cfg.patience}, likelihood label_flip_rate=ε), warm-started every refit",
                    "ensemble": f"EnsembleConfig(n_members={cfg.n_members}, hidden={cfg.hidden}, "
                    f"prior_scale={cfg.prior_scale}, anchor_strength={cfg.anchor_strength}, bootstrap=True), "
                    "warm-started",
                    "botorch_eubo": f"PairwiseGP on PCA-{cfg.gp_dim} features scaled to [0,1]; EUBO over (best, x) "
                    f"for all x plus {cfg.eubo_random_pairs} random pairs",
                    "choix_random": f"random pairs; choix.ilsr_pairwise(alpha={cfg.choix_alpha}) on compared items",
                },
            },
            "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine(),
            "summary": summary,
            "settings": per_setting,
            "scale": scale,
        }
    results["targets"] = targets(results.get("summary", {}), scale)
    if runs and not args.no_plots:
        results["plots"] = plot(runs, strategies, out_dir)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{tag}.md").write_text(markdown(results))
    print(f"written {json_path} and {out_dir / f'{tag}.md'}", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
