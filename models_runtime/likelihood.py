"""The likelihood of preference judgments as a torch module (see
:mod:`models_runtime.preferences` for the models and their parameters). Kept apart from
the data classes so that importing those does not import torch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models_runtime.preferences import LikelihoodConfig, PreferenceTensors

__all__ = ["FLIP_PRIOR", "FLIP_PRIOR_MEAN", "FLIP_RATE_KEY", "FLIP_RATE_LR", "PreferenceLikelihood"]

# Stand-in score for padding slots of a ranking: exp() of it is exactly zero.
_PAD_SCORE = -1e9

# Beta(a, b) prior of a learned label-flip rate ε: mean 0.05, and worth a + b = 30
# observations of whether an answer was flipped, so a few hundred judgments outweigh
# it. a > 1 makes its density vanish at ε = 0, which keeps the logit finite when the
# data show no flips at all (its mode is then (a - 1) / (a + b - 2) ≈ 0.018).
FLIP_PRIOR = (1.5, 28.5)
FLIP_PRIOR_MEAN = FLIP_PRIOR[0] / (FLIP_PRIOR[0] + FLIP_PRIOR[1])
# Name of the learned parameter in a likelihood's state_dict.
FLIP_RATE_KEY = "flip_logit"
# Adam learning rate of ε's logit, apart from the model's: at the ensemble's 1e-3 the
# logit could move by at most 0.2 in its 200 epochs, while that of ε = 0.2 lies 1.8
# from the prior mean's.
FLIP_RATE_LR = 0.05


def _flip_logit(flip_rate: Any) -> torch.Tensor:
    """ρ with ``0.5 * sigmoid(ρ) == flip_rate`` (float32, the shape of ``flip_rate``)."""
    eps = np.asarray(flip_rate, dtype=np.float64)
    if not (np.isfinite(eps).all() and (eps > 0.0).all() and (eps < 0.5).all()):
        raise ValueError(f"a learned label_flip_rate starts in (0, 0.5), got {flip_rate}")
    return torch.as_tensor(np.log(2.0 * eps) - np.log1p(-2.0 * eps), dtype=torch.float32)


class PreferenceLikelihood(torch.nn.Module):
    """Scores judgments under a :class:`LikelihoodConfig`:
    ``likelihood(scores, data.to_tensors(device))`` gives per-judgment NLLs;
    ``pair_probabilities`` the predicted outcome probabilities of the pairs.

    With a fixed label-flip rate (a number in the config) the module has no
    parameters. With ``label_flip_rate=None`` it learns ε: it holds the parameter
    ``flip_logit`` ρ, ε = 0.5·sigmoid(ρ) so that ε stays in (0, 0.5), which a fit
    trains with its model (adding :meth:`prior_nll`) and saves in the model's
    ``state_dict``. ``flip_rate`` sets ε's starting value and shape: a float for one
    model, one per member (``(M,)``) for ``M`` ensemble members scored together as
    ``(M, N)``; the default is the prior mean for one model."""

    def __init__(self, config: LikelihoodConfig | None = None, *, flip_rate: Any = None) -> None:
        super().__init__()
        self.config = config if config is not None else LikelihoodConfig()
        if self.learns_flip_rate:
            start = FLIP_PRIOR_MEAN if flip_rate is None else flip_rate
            self.register_parameter(FLIP_RATE_KEY, torch.nn.Parameter(_flip_logit(start)))

    @property
    def learns_flip_rate(self) -> bool:
        """Whether ε is a parameter learned from the judgments."""
        return self.config.label_flip_rate is None

    def flip_rate(self) -> np.ndarray:
        """ε as float64: the learned value (shape ``()`` or ``(M,)``), or the fixed one."""
        if not self.learns_flip_rate:
            return np.asarray(self.config.label_flip_rate, dtype=np.float64)
        return 0.5 * torch.sigmoid(self.flip_logit.detach().double()).cpu().numpy()

    def prior_nll(self) -> torch.Tensor:
        """−log density of ε under the Beta :data:`FLIP_PRIOR` (up to a constant), one
        value per learned ε; a fit adds it to its summed NLL, i.e. divided by the
        total training weight in a mean loss. Only for a learned ε."""
        a, b = FLIP_PRIOR
        log_keep, log_eps = self._flip_logs(0, self.flip_logit.dtype)
        return -((a - 1.0) * log_eps + (b - 1.0) * log_keep)

    def _flip_logs(self, trailing: int, dtype: torch.dtype) -> tuple[Any, Any] | None:
        """``(log(1 - ε), log ε)``, or None when labels never flip. A learned ε is
        shaped to broadcast against ``trailing`` more dimensions than it has, in
        ``dtype`` (the scores')."""
        eps = self.config.label_flip_rate
        if eps is not None:
            return (math.log1p(-eps), math.log(eps)) if eps > 0.0 else None
        rho = self.flip_logit.to(dtype).reshape(self.flip_logit.shape + (1,) * trailing)
        # log ε = log σ(ρ) - log 2 and log(1 - ε) = log1p(-σ(ρ)/2) stay accurate
        # however far ρ goes.
        return torch.log1p(-0.5 * torch.sigmoid(rho)), F.logsigmoid(rho) - math.log(2.0)

    def pair_log_probs(self, scores: torch.Tensor, tensors: PreferenceTensors) -> torch.Tensor:
        """Log-probabilities ``(..., P, 3)`` of left preferred, tie, right
        preferred for each pair, after label flips; ``scores`` is ``(N,)`` or
        ``(M, N)``. Soft ties get a tie log-probability of -inf."""
        cfg = self.config
        d = scores[..., tensors.pair_left] - scores[..., tensors.pair_right]
        param = cfg.tie_parameter(tensors.tie_rate)
        if cfg.ties == "davidson":
            log_nu = torch.full_like(d, math.log(param) if param > 0 else -math.inf)
            logits = torch.stack([d / 2, log_nu, -d / 2], dim=-1)
            logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        elif cfg.ties == "rao_kupper":
            eta = math.log(param)
            lp_left, lp_right = F.logsigmoid(d - eta), F.logsigmoid(-d - eta)
            # P(tie) = σ(η - |d|) - σ(-η - |d|) (it is symmetric in d), computed as a
            # log-difference of two lower tails so that it does not cancel to zero in
            # float32 for confident pairs, whose gradient would then be NaN.
            gap = d.abs()
            upper, lower = F.logsigmoid(eta - gap), F.logsigmoid(-eta - gap)
            lp_tie = upper + torch.log1p(-torch.exp((lower - upper).clamp(max=-1e-12)))
            logp = torch.stack([lp_left, lp_tie, lp_right], dim=-1)
        else:
            logp = torch.stack([F.logsigmoid(d), torch.full_like(d, -math.inf), F.logsigmoid(-d)], dim=-1)
        flips = self._flip_logs(1, scores.dtype)
        if flips is not None:
            keep, flip = flips
            lp_left = torch.logaddexp(keep + logp[..., 0], flip + logp[..., 2])
            lp_right = torch.logaddexp(keep + logp[..., 2], flip + logp[..., 0])
            logp = torch.stack([lp_left, logp[..., 1], lp_right], dim=-1)
        return logp

    def pair_probabilities(
        self, scores: torch.Tensor, tensors: PreferenceTensors
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(p_left, p_tie, p_right)`` of each pair as observed (label flips
        included), each shaped like ``scores[..., pairs]``."""
        p = self.pair_log_probs(scores, tensors).exp()
        return p[..., 0], p[..., 1], p[..., 2]

    def pair_nll(self, scores: torch.Tensor, tensors: PreferenceTensors) -> torch.Tensor:
        cfg = self.config
        logp = self.pair_log_probs(scores, tensors)
        y = tensors.pair_targets
        if cfg.ties == "soft":
            # A tie is half a win for each side.
            y = torch.stack([y[:, 0] + y[:, 1] / 2, torch.zeros_like(y[:, 1]), y[:, 2] + y[:, 1] / 2], dim=-1)
        # 0 * -inf must count as 0: only the observed outcomes contribute.
        nll = -torch.where(y > 0, y * logp, torch.zeros_like(logp)).sum(dim=-1)
        if cfg.both_bad_weight > 0.0 and bool(tensors.pair_both_bad.any()):
            centre = scores[..., tensors.judged].mean(dim=-1, keepdim=True)
            low = F.softplus(scores[..., tensors.pair_left] - centre) + F.softplus(
                scores[..., tensors.pair_right] - centre
            )
            nll = nll + cfg.both_bad_weight * torch.where(tensors.pair_both_bad, low, torch.zeros_like(low))
        return nll

    def ranking_nll(self, scores: torch.Tensor, tensors: PreferenceTensors) -> torch.Tensor:
        s = scores[..., tensors.rank_items]
        s = torch.where(tensors.rank_present, s, torch.full_like(s, _PAD_SCORE))
        if self.config.listwise == "plackett_luce":
            # Log of the sum over each stage's remaining items: a reversed cumulative
            # log-sum-exp along the ranking.
            rest = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
            terms = torch.where(tensors.rank_stage, rest - s, torch.zeros_like(s))
            return terms.sum(dim=-1)
        k = s.shape[-1]
        diff = s[..., :, None] - s[..., None, :]
        positions = torch.arange(k, device=s.device)
        later = positions[None, :] > positions[:, None]
        ordered = positions[None, :, None] < tensors.rank_n_ranked[:, None, None]
        mask = later & ordered & tensors.rank_present[:, None, :]
        flips = self._flip_logs(3, scores.dtype)
        if flips is not None:
            keep, flip = flips
            lp = torch.logaddexp(keep + F.logsigmoid(diff), flip + F.logsigmoid(-diff))
        else:
            lp = F.logsigmoid(diff)
        return -torch.where(mask, lp, torch.zeros_like(lp)).sum(dim=(-1, -2))

    def forward(self, scores: torch.Tensor, tensors: PreferenceTensors) -> torch.Tensor:
        """Negative log-likelihood of every judgment (pairs, then rankings),
        unweighted: ``(n_judgments,)`` for scores ``(N,)``, ``(M, n_judgments)``
        for scores ``(M, N)``."""
        parts = []
        if tensors.pair_left.numel():
            parts.append(self.pair_nll(scores, tensors))
        if tensors.rank_items.numel():
            parts.append(self.ranking_nll(scores, tensors))
        if not parts:
            return scores.new_zeros((*scores.shape[:-1], 0))
        return torch.cat(parts, dim=-1)
