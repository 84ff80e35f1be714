"""Bradley–Terry scores of k items from (weighted) win counts, with 95% intervals and
P(best) from the posterior (or a percentile bootstrap): the runtime's Bradley–Terry
for counts.

It is the same model as :class:`models_runtime.likelihood.PreferenceLikelihood` on
pairs (``P(i beats j) = σ(θ_i − θ_j)``, a tie half a win each way, i.e. ``ties="soft"``)
with one utility per item, fitted by Newton's method in numpy instead of by torch:
``fit_reward_model`` on one-hot features with a linear head, L-BFGS, nothing held out
and ``l2 = ridge / (2 · total weight)`` reaches the same scores
(tests/models_runtime/stats/test_bradley_terry.py checks it to 1e-4). The two are kept
because they serve different callers: this one refits a few dozen items in about a
millisecond without torch, so the web process can bootstrap a leaderboard (200 refits)
on a dashboard poll; the torch likelihood fits features, rankings, ties and label flips
in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BT_PRIOR_SD",
    "BT_RIDGE",
    "BootstrapFit",
    "PairEvents",
    "PosteriorFit",
    "bradley_terry_bootstrap",
    "bradley_terry_posterior",
    "bradley_terry_scores",
]

# A N(0, 1/ridge) prior on every score, enough to keep an item that won (or
# lost) every comparison, or a set of items never compared with the rest,
# finite without moving well-measured scores visibly.
BT_RIDGE = 0.1
# Prior standard deviation of a score in :func:`bradley_terry_posterior`: two items
# a prior standard deviation apart are preferred 73 : 27.
BT_PRIOR_SD = 1.0


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def bradley_terry_scores(wins: np.ndarray, *, ridge: float = BT_RIDGE, max_iter: int = 100) -> np.ndarray:
    """Bradley–Terry log-strengths from a k × k matrix of (weighted) wins.

    ``wins[i, j]`` is how often i beat j; a tie counts half to each side.
    Maximises Σ wins_ij log σ(θ_i − θ_j) − ridge/2 ‖θ‖² by Newton's method
    with step halving (the objective is strictly concave for ridge > 0).
    The ridge term makes the scores sum to zero at the optimum, so each is
    relative to the average item, and keeps them finite for items that won
    or lost everything or were never compared with the rest.
    """
    wins = np.asarray(wins, dtype=float)
    k = wins.shape[0]
    if wins.shape != (k, k) or (wins < 0).any():
        raise ValueError("wins must be a square matrix of non-negative counts")
    if ridge <= 0:
        raise ValueError("ridge must be positive")
    games = wins + wins.T
    theta = np.zeros(k)

    def objective(t: np.ndarray) -> float:
        return float((wins * _log_sigmoid(t[:, None] - t[None, :])).sum() - 0.5 * ridge * t @ t)

    value = objective(theta)
    for _ in range(max_iter):
        diff = theta[:, None] - theta[None, :]
        p = np.exp(_log_sigmoid(diff))  # P(i beats j)
        grad = (wins - games * p).sum(axis=1) - ridge * theta
        weight = games * p * (1.0 - p)
        laplacian = np.diag(weight.sum(axis=1)) - weight
        step = np.linalg.solve(laplacian + ridge * np.eye(k), grad)
        t = 1.0
        while True:
            candidate = theta + t * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12 or t < 1e-8:
                break
            t *= 0.5
        theta, value = candidate, new_value
        if np.abs(t * step).max() < 1e-10:
            break
    return theta


@dataclass(frozen=True)
class PairEvents:
    """Pairwise outcomes between k items, each tagged with the judgment it came from.

    One event per ordered (winner, loser) with weight 1, or two events of
    weight 0.5 (one each way) for a tie. Bootstrap replicates resample
    judgments, so all pairs a listwise judgment implies move together.
    """

    judgment: np.ndarray  # int, index into 0..n_judgments-1
    winner: np.ndarray  # int, index into 0..k-1
    loser: np.ndarray
    weight: np.ndarray
    n_judgments: int
    k: int

    def wins(self, judgment_weights: np.ndarray | None = None) -> np.ndarray:
        """The k × k matrix of weighted wins, each judgment's events scaled by
        ``judgment_weights`` (a bootstrap replicate's counts) when given."""
        w = self.weight if judgment_weights is None else self.weight * judgment_weights[self.judgment]
        flat = np.bincount(self.winner * self.k + self.loser, weights=w, minlength=self.k * self.k)
        return flat.reshape(self.k, self.k)


@dataclass(frozen=True)
class BootstrapFit:
    """Scores fitted on all judgments, their 95% percentile-bootstrap interval and
    each item's share of replicates in which it scores highest."""

    scores: np.ndarray  # fit on all judgments
    low: np.ndarray  # 2.5 % percentile of the replicates
    high: np.ndarray  # 97.5 %
    p_best: np.ndarray  # share of replicates in which each item scores highest
    replicates: int


def bradley_terry_bootstrap(
    events: PairEvents, *, n_bootstrap: int = 200, seed: int = 0, ridge: float = BT_RIDGE
) -> BootstrapFit:
    """Bradley–Terry scores with 95% percentile-bootstrap intervals and P(best).

    Each replicate draws ``n_judgments`` judgments with replacement and refits;
    P(best) is the share of replicates in which an item has the highest score
    (so it sums to one). With ``n_bootstrap=0`` the intervals collapse onto the
    point estimate and P(best) is one for the top item.
    """
    scores = bradley_terry_scores(events.wins(), ridge=ridge)
    if n_bootstrap <= 0 or events.n_judgments == 0:
        p_best = np.zeros(events.k)
        if events.k:
            p_best[int(np.argmax(scores))] = 1.0
        return BootstrapFit(scores, scores.copy(), scores.copy(), p_best, 0)
    rng = np.random.default_rng(seed)
    reps = np.empty((n_bootstrap, events.k))
    for r in range(n_bootstrap):
        counts = np.bincount(rng.integers(0, events.n_judgments, events.n_judgments), minlength=events.n_judgments)
        reps[r] = bradley_terry_scores(events.wins(counts.astype(float)), ridge=ridge)
    best = np.bincount(np.argmax(reps, axis=1), minlength=events.k) / n_bootstrap
    low, high = np.percentile(reps, [2.5, 97.5], axis=0)
    return BootstrapFit(scores, low, high, best, n_bootstrap)


@dataclass(frozen=True)
class PosteriorFit:
    """Scores at the posterior mode, their 95% credible interval and each item's
    posterior probability of scoring highest (:func:`bradley_terry_posterior`)."""

    scores: np.ndarray  # posterior mode, relative to the average item
    low: np.ndarray  # 2.5 % posterior quantile
    high: np.ndarray  # 97.5 %
    p_best: np.ndarray
    samples: int


def bradley_terry_posterior(
    events: PairEvents, *, n_samples: int = 2000, seed: int = 0, prior_sd: float = BT_PRIOR_SD
) -> PosteriorFit:
    """Bradley–Terry scores with 95% intervals and P(best) from the Laplace
    approximation to the posterior under a ``N(0, prior_sd²)`` prior on each score.

    Scores (and intervals) are relative to the average item, which is what a
    comparison can measure. The covariance is the inverse of the log-posterior's
    Hessian (the win graph's weighted Laplacian plus the prior), so it narrows with
    every judgment and stays at the prior's width for items rarely compared.
    It replaced a percentile bootstrap over judgments, which with 20 judgments
    covered the true scores in 87% of simulated studies (4 items) and, under
    random answers between two items, claimed P(best) ≥ 95% in 14% of them; this
    posterior covers 93.5% and claims it in 8%, and its P(best) is calibrated
    when the truth is drawn from the prior (``python -m
    tests.models_runtime.stats.test_bradley_terry``).
    """
    ridge = 1.0 / prior_sd**2
    wins = events.wins()
    scores = bradley_terry_scores(wins, ridge=ridge)
    games = wins + wins.T
    p = np.exp(_log_sigmoid(scores[:, None] - scores[None, :]))
    weight = games * p * (1.0 - p)
    precision = np.diag(weight.sum(axis=1)) - weight + ridge * np.eye(events.k)
    chol = np.linalg.cholesky(precision)
    z = np.random.default_rng(seed).standard_normal((events.k, n_samples))
    draws = (scores[:, None] + np.linalg.solve(chol.T, z)).T
    draws -= draws.mean(axis=1, keepdims=True)  # relative to the average item
    best = np.bincount(np.argmax(draws, axis=1), minlength=events.k) / n_samples
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return PosteriorFit(scores - scores.mean(), low, high, best, n_samples)
