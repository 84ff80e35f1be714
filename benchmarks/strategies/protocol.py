"""The protocol: settings, the knobs, and the problem every strategy of a seed shares.

A setting is a hidden-utility family (``linear`` or ``mlp`` in the MiniLM
embedding), a Bradley–Terry scale ``s`` and a label-flip rate ``ε``. For each seed a
pool of N candidates (rows of the ``benchmarks.pools`` pool, one prompt, so every
pair is allowed) and a hidden utility ``u`` (standardised over the N) are drawn; the
simulated annotator (``models_runtime.simulate``) answers ``P(a ≻ b) = σ(s·(u_a −
u_b))`` and flips the answer with probability ε. Answers to a pair are common random
numbers (the same uniform for pair (i, j) whoever asks it), so strategies are
compared on the same annotator noise and ratios are paired by seed.

Every seeded generator here is keyed by a list of small integers (stream number,
seed, the setting's or strategy's position), so the position of a strategy in
:data:`STRATEGIES` and of a setting in :data:`ALL_SETTINGS` are part of the protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from activelearn.strategies import registry
from benchmarks import pools
from models_runtime.simulate import PreferenceOracle, hidden_utility

# The prefloop strategies in the registry's order, then the peers (see ``learners``
# and ``eubo``). The order seeds each strategy's stream, so peers stay last.
PREFLOOP = tuple(registry.names())
PEERS = ("botorch_eubo", "choix_random")
STRATEGIES = PREFLOOP + PEERS
ENSEMBLE = tuple(s for s in PREFLOOP if registry.get_spec(s).needs == "member_scores")
SINGLE_HEAD = tuple(s for s in PREFLOOP if s not in ENSEMBLE)
FAMILIES = ("linear", "mlp")
SCALES = (10.0, 3.0)
FLIPS = (0.0, 0.1)


@dataclass(frozen=True)
class Setting:
    """The annotator of a run: utility family, Bradley–Terry scale and flip rate."""

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
    eval_every: int = 5  # regret curve grid (T always included); see the package docstring
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
        """A short hash of every knob; saved runs are reused only under the same digest."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


QUICK = BenchConfig(n_items=60, steps=30, pool_size=2_000, eval_every=5, hidden=16, max_epochs=40, n_members=4)


def model_outputs(strategy: str) -> tuple[str, ...]:
    """The ``SelectionInput`` fields the benchmark fills from the model for a prefloop
    strategy: what the registry says it needs, plus the scores that a gradient
    strategy also reads."""
    needs = registry.get_spec(strategy).needs
    return {
        None: (),
        "scores": ("scores",),
        "gradients": ("scores", "gradients"),
        "member_scores": ("member_scores",),
    }[needs]


def load_pool(cfg: BenchConfig) -> np.ndarray:
    """The embedded candidate pool (MiniLM rows), from the cache after the first run."""
    return pools.embedded_pool(cfg.pool_size)[1]


def make_problem(pool: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """The seed's N candidates (rows of ``pool``) and their standardised hidden utility;
    the same for every strategy and for every s/ε of one family."""
    rng = np.random.default_rng([1, seed, FAMILIES.index(setting.family)])
    idx = np.sort(rng.choice(pool.shape[0], size=cfg.n_items, replace=False))
    features = np.ascontiguousarray(pool[idx], dtype=np.float32)
    return features, hidden_utility(features, setting.family, rng, hidden=cfg.utility_hidden)


def start_pairs(n_items: int, n: int, seed: int, setting: Setting) -> list[tuple[int, int]]:
    """The ``n`` random distinct pairs every strategy of a seed and setting starts from."""
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
        self.oracle = PreferenceOracle(
            utility, scale=setting.scale, label_flip_rate=setting.eps, position_bias=cfg.position_bias
        )
        self.key = [3, seed, int(setting.scale * 10), int(setting.eps * 100), FAMILIES.index(setting.family)]

    def answer(self, i: int, j: int) -> float:
        """1.0 when the annotator prefers ``i`` (shown first) to ``j``, else 0.0."""
        rng = np.random.default_rng([*self.key, i, j])
        return float(self.oracle.answer_pairs(np.array([i]), np.array([j]), rng)[0])
