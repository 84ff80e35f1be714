"""Recommendations with uncertainty: the best candidate of each group (prompt), the
probability that each candidate is the best one, and a leaderboard.

Both model kinds give posterior samples of the utilities of every candidate:

* an ensemble's members are its samples (:meth:`EnsembleRewardModel.member_scores`);
* a single head gets a last-layer Laplace approximation (:func:`laplace_samples`): the
  output layer's weights ``w`` (over the head's last hidden features ``φ(x)``; the
  bias stays fixed, as utilities have no absolute level) are drawn from
  ``N(ŵ, Λ⁻¹)`` with ``Λ`` the prior precision of the fit's L2 penalty plus the
  Bradley–Terry Fisher information of the judged pairs,
  ``Σ p(1 − p)(φ(a) − φ(b))(φ(a) − φ(b))ᵀ``. Samples are joint across candidates, so
  P(best) respects the correlations between near-identical responses.

``P(best)`` of a candidate is the share of samples in which it has the highest
utility of its group; the leaderboard reports the posterior mean and standard
deviation of each utility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models_runtime.preferences import PreferenceData

__all__ = ["GroupLeaderboard", "Recommendation", "laplace_samples", "recommend"]

# Numerical floor added to the precision's diagonal so the Cholesky factor exists even
# without any penalty (an unpenalised bias direction has zero Fisher information).
_JITTER = 1e-6


@dataclass(frozen=True)
class GroupLeaderboard:
    """One group's candidates, best first: row indices, posterior mean and standard
    deviation of the utility, and P(best)."""

    group: int
    items: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    p_best: np.ndarray

    @property
    def best(self) -> int:
        return int(self.items[0])

    def as_dict(self, ids: np.ndarray | None = None, top: int = 10) -> dict[str, Any]:
        """JSON-ready form, with ``ids[row]`` (e.g. candidate ids) instead of rows."""
        keys = self.items if ids is None else np.asarray(ids)[self.items]
        return {
            "best": int(keys[0]),
            "leaderboard": [
                {
                    "candidate": int(k),
                    "mean": round(float(m), 4),
                    "std": round(float(s), 4),
                    "p_best": round(float(p), 4),
                }
                for k, m, s, p in zip(keys[:top], self.mean[:top], self.std[:top], self.p_best[:top], strict=True)
            ],
        }


@dataclass(frozen=True)
class Recommendation:
    """Per-candidate posterior summaries (``(N,)`` arrays) and per-group leaderboards."""

    method: str
    n_samples: int
    mean: np.ndarray
    std: np.ndarray
    p_best: np.ndarray
    groups: list[GroupLeaderboard]


def recommend(groups: np.ndarray, samples: np.ndarray, method: str) -> Recommendation:
    """Summaries of posterior utility ``samples`` (``(S, N)``, one row per sample) for
    candidates in ``groups`` (``(N,)``, group of each candidate): mean, standard
    deviation, P(best within its group), and each group's leaderboard ordered by
    P(best), then mean."""
    s = np.asarray(samples, dtype=np.float64)
    g = np.asarray(groups)
    if s.ndim != 2 or s.shape[1] != g.shape[0] or s.shape[0] < 1:
        raise ValueError(f"samples must be (S >= 1, {g.shape[0]}), got {s.shape}")
    mean, std = s.mean(axis=0), s.std(axis=0)
    p_best = np.zeros(g.shape[0], dtype=np.float64)
    boards: list[GroupLeaderboard] = []
    order = np.argsort(g, kind="stable")
    cuts = np.flatnonzero(np.diff(g[order])) + 1
    for members in np.split(order, cuts):
        if members.size == 0:
            continue
        # Position (within the group) of each sample's best candidate.
        winners = np.argmax(s[:, members], axis=1)
        p_best[members] = np.bincount(winners, minlength=members.size) / s.shape[0]
        rank = np.lexsort((-mean[members], -p_best[members]))
        ranked = members[rank]
        boards.append(GroupLeaderboard(int(g[members[0]]), ranked, mean[ranked], std[ranked], p_best[ranked]))
    return Recommendation(method=method, n_samples=int(s.shape[0]), mean=mean, std=std, p_best=p_best, groups=boards)


def laplace_samples(
    model: Any,
    features: np.ndarray,
    data: PreferenceData,
    rng: np.random.Generator,
    n_samples: int = 256,
) -> np.ndarray:
    """``(n_samples, N)`` float32 utility samples of a single-head
    :class:`models_runtime.reward.RewardModel` under a last-layer Laplace approximation
    fitted on the judged pairs of ``data`` (rankings enter as their pairwise split;
    ties add information like decided pairs). The first sample is not special: all
    are random draws."""
    import torch

    phi = model.last_layer_features(features)[:, :-1]  # (N, q) hidden features
    w_all = model.last_layer_weights()
    w_hat, bias = w_all[:-1], w_all[-1]
    pairs = data.pairwise_split()
    d = phi[pairs.pair_left] - phi[pairs.pair_right]
    p = 1.0 / (1.0 + np.exp(-(d @ w_hat)))
    fisher = (d * (pairs.pair_weight * p * (1.0 - p))[:, None]).T @ d
    # The fit minimises the mean NLL + l2·||W||², i.e. a Gaussian prior of precision
    # 2·l2·(total judgment weight) on the weights in sum form. The bias is left at
    # its fitted value: utilities are only defined up to a shift, and a sampled bias
    # would add a meaningless common term to every candidate's spread.
    prior = 2.0 * model.config.l2 * float(data.weight.sum())
    precision = fisher + np.eye(phi.shape[1]) * (prior + _JITTER)
    chol = np.linalg.cholesky(precision)
    z = rng.standard_normal((phi.shape[1], n_samples))
    # w = ŵ + L⁻ᵀ z has covariance (L Lᵀ)⁻¹ = Λ⁻¹.
    w = w_hat[:, None] + np.linalg.solve(chol.T, z)
    with torch.no_grad():
        samples = torch.from_numpy(phi.astype(np.float32)) @ torch.from_numpy(w.astype(np.float32)) + float(bias)
    return samples.T.contiguous().numpy()
