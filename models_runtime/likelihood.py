"""The likelihood of preference judgments as a torch module (see
:mod:`models_runtime.preferences` for the models and their parameters). Kept apart from
the data classes so that importing those does not import torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models_runtime.preferences import LikelihoodConfig, PreferenceTensors

__all__ = ["PreferenceLikelihood"]

# Stand-in score for padding slots of a ranking: exp() of it is exactly zero.
_PAD_SCORE = -1e9


class PreferenceLikelihood(torch.nn.Module):
    """Scores judgments under a :class:`LikelihoodConfig` (a module without
    parameters): ``likelihood(scores, data.to_tensors(device))`` gives per-judgment
    NLLs; ``pair_probabilities`` the predicted outcome probabilities of the pairs."""

    def __init__(self, config: LikelihoodConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else LikelihoodConfig()

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
        eps = cfg.label_flip_rate
        if eps > 0.0:
            keep, flip = math.log1p(-eps), math.log(eps)
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
        eps = self.config.label_flip_rate
        if eps > 0.0:
            lp = torch.logaddexp(math.log1p(-eps) + F.logsigmoid(diff), math.log(eps) + F.logsigmoid(-diff))
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
