"""The BoTorch peer, ``botorch_eubo``: a preference GP and analytic EUBO.

BoTorch and its dependencies are heavy and needed by this peer only, so they are
imported inside the methods (``pip install -r requirements-bench.txt``).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np

from benchmarks.strategies.learners import Learner
from benchmarks.strategies.protocol import BenchConfig


class EuboLearner(Learner):
    """BoTorch PairwiseGP (probit likelihood without label flips, which BoTorch does
    not offer; Laplace approximation; default Scale(RBF) kernel with its priors,
    hyper-parameters refit at each fit, so the learned output scale absorbs what
    noise it can) on features PCA-reduced to ``gp_dim`` and min-max scaled to the unit
    cube; datapoints are the compared items only. EUBO is evaluated on the pairs
    (current best, x) for every x, never on an asked pair; a batch is the pairs of highest EUBO (the app's cadence
    asks several pairs per fit, and BoTorch's analytic EUBO scores one pair: its
    top pairs are the natural batch)."""

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

    def select(self, excluded: set[tuple[int, int]], n: int) -> list[tuple[int, int]]:
        """The ``n`` candidate pairs of highest EUBO (a batch, best first), none of them
        asked before; fewer when fewer candidates are left."""
        import torch
        from botorch.acquisition.preference import AnalyticExpectedUtilityOfBestOption

        assert self.scores is not None
        best = int(np.argmax(self.scores))
        others = np.array(
            [x for x in range(self.z.shape[0]) if x != best and (min(best, x), max(best, x)) not in excluded],
            dtype=np.int64,
        )
        if others.size == 0:
            return []
        acq = AnalyticExpectedUtilityOfBestOption(pref_model=self.model)
        x = torch.from_numpy(np.stack([np.repeat(self.z[best][None], others.size, axis=0), self.z[others]], axis=1))
        with torch.no_grad():
            values = acq(x).numpy()
        top = np.argsort(-values, kind="stable")[:n]
        return [(best, int(others[k])) for k in top]
