"""The catalogue of reward-model kinds: everything the app needs to know about one.

A study names its kind (``Study.model_type``) and options (``Study.model_params``);
the loop never branches on the kind itself. It asks this registry for the kind's
configuration, fit, loader, posterior samples (for recommendations) and the outputs
a query strategy may need from it:

=================  =============================================================
output             what it is
=================  =============================================================
``scores``         one utility per item, ``(N,)``
``member_scores``  utilities of every member of an epistemic model, ``(M, N)``
``gradients``      a :class:`models_runtime.gradients.GradientFeatureSource`
=================  =============================================================

Adding a kind is one module with its config, fit and model classes plus one entry in
:data:`KINDS` below (see docs/ARCHITECTURE.md for a worked example). Nothing here
imports torch: the modules it names import it when they fit or load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models_runtime import ensemble, gradients, kernel_bt, recommend, reward
from models_runtime.catalogue import Catalogue
from models_runtime.preferences import LikelihoodConfig, PreferenceData

__all__ = [
    "CALIBRATED_METHODS",
    "DEFAULT_KIND",
    "KINDS",
    "PARAMS",
    "ModelKind",
    "Param",
    "choices",
    "get",
    "kinds",
    "names",
    "param_problems",
    "register",
    "registered",
]


@dataclass(frozen=True)
class Param:
    """One option of ``Study.model_params``: its type, a range check, the phrase
    an error message uses, and the default a fit uses when it is not set. An option
    whose default is None may also be set to null, which means the same."""

    kind: type
    check: Callable[[Any], bool]
    expected: str
    default: Any


# Options a study may set, whatever its kind (a kind reads the ones it uses, so a
# study that switches kind keeps valid options).
PARAMS: dict[str, Param] = {
    "ties": Param(
        str, lambda v: v in {"davidson", "rao_kupper", "soft"}, "one of davidson, rao_kupper, soft", "davidson"
    ),
    # Unset (None): each fit learns ε from the judgments; a number fixes it.
    "label_flip_rate": Param(
        float,
        lambda v: 0.0 <= v < 0.5,
        "a number in [0, 0.5) (0 for no label flips), or unset to learn it from the judgments",
        None,
    ),
    "hidden": Param(int, lambda v: 1 <= v <= 4096, "an integer from 1 to 4096", 64),
    "l2": Param(float, lambda v: v >= 0.0, "a number ≥ 0", 1e-3),
    "seed": Param(int, lambda v: v >= 0, "an integer ≥ 0", 0),
    "n_members": Param(int, lambda v: 2 <= v <= 64, "an integer from 2 to 64", 10),
    "prior_scale": Param(float, lambda v: v >= 0.0, "a number ≥ 0", 0.0),
}


def param_problems(value: Any) -> list[str]:
    """What is wrong with a study's model options, one message per fault naming
    the key (empty when they are fine)."""
    if not isinstance(value, dict):
        return ["Model options must be a JSON object."]
    problems = []
    for key, raw in value.items():
        spec = PARAMS.get(key)
        if spec is None:
            problems.append(f"unknown option “{key}” (known: {', '.join(sorted(PARAMS))})")
            continue
        if raw is None and spec.default is None:
            continue
        try:
            ok = not isinstance(raw, bool) and spec.check(spec.kind(raw))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"“{key}” must be {spec.expected}, got {raw!r}")
    return problems


def _option(params: Mapping[str, Any], name: str) -> Any:
    spec = PARAMS[name]
    value = params.get(name, spec.default)
    return None if value is None else spec.kind(value)


def _common(params: Mapping[str, Any], device: str) -> dict[str, Any]:
    likelihood = LikelihoodConfig(ties=_option(params, "ties"), label_flip_rate=_option(params, "label_flip_rate"))
    return {
        "hidden": _option(params, "hidden"),
        "seed": _option(params, "seed"),
        "likelihood": likelihood,
        "device": device,
    }


# --- single heads (models_runtime.reward) -------------------------------------------


def _head_config(head: str) -> Callable[[Mapping[str, Any], str], Any]:
    def make(params: Mapping[str, Any], device: str) -> Any:
        return reward.RewardModelConfig(head=head, l2=_option(params, "l2"), **_common(params, device))

    return make


def _head_fit(features: np.ndarray, data: PreferenceData, config: Any, init_state: Any, holdout: Any = None) -> Any:
    return reward.fit_reward_model(features, data, config, init_state=init_state, holdout=holdout)


def _head_load(path: str) -> Any:
    return reward.RewardModel.load(path)


def _calibrated_posterior(
    model: Any, features: np.ndarray, data: PreferenceData, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, str]:
    """The neural kinds' recommendations come from the kernel Bradley–Terry
    posterior fitted on the same judgments and features (``models_runtime.kernel_bt``,
    default configuration), not from the fitted network: a study's leaderboard
    reads the same calibrated posterior whatever model chooses its comparisons.
    The networks' own posteriors were not calibrated: after 20 random answers over
    10 prompts of 3 responses a last-layer Laplace on an MLP's hidden features
    (learnt from the same judgments) claimed a top P(best) of 78 % on average (up
    to 96 %) and 10 ensemble members 70 % (up to 100 %); the Bayesian posteriors'
    95 % intervals cover the truth where theirs did 89 % and 81 % of the time
    (python -m tests.models_runtime.test_mr_recommend_calibration). Before the
    kernel model this was the Bayesian linear posterior (``recommend.bayes_linear_samples``),
    which a wavy utility defeats."""
    fitted = kernel_bt.fit_kernel_bt(features, data, kernel_bt.KernelBTConfig()).model
    return fitted.posterior(features, data, rng, n)[1], kernel_bt.POSTERIOR_METHOD


def _head_outputs(model: Any, features: np.ndarray, needs: str | None, judged: Callable[[], PreferenceData]) -> dict:
    out: dict[str, Any] = {"scores": model.scores(features)}
    if needs == "gradients":
        pairs = judged().pairwise_split()
        out["gradients"] = gradients.GradientFeatureSource(model, features, pairs.pair_left, pairs.pair_right)
    return out


# --- anchored ensembles (models_runtime.ensemble) ------------------------------------


def _ensemble_config(params: Mapping[str, Any], device: str) -> Any:
    return ensemble.EnsembleConfig(
        n_members=_option(params, "n_members"), prior_scale=_option(params, "prior_scale"), **_common(params, device)
    )


def _ensemble_fit(features: np.ndarray, data: PreferenceData, config: Any, init_state: Any, holdout: Any = None) -> Any:
    return ensemble.fit_ensemble(features, data, config, init_state=init_state, holdout=holdout)


def _ensemble_load(path: str) -> Any:
    return ensemble.EnsembleRewardModel.load(path)


def _ensemble_outputs(
    model: Any, features: np.ndarray, needs: str | None, judged: Callable[[], PreferenceData]
) -> dict:
    members = model.member_scores(features)
    return {"member_scores": members, "scores": members.mean(axis=0)}


# --- Bayesian kernel Bradley–Terry (models_runtime.kernel_bt) -----------------------


def _kernel_config(params: Mapping[str, Any], device: str) -> Any:
    return kernel_bt.KernelBTConfig(seed=_option(params, "seed"))


def _kernel_fit(features: np.ndarray, data: PreferenceData, config: Any, init_state: Any, holdout: Any = None) -> Any:
    return kernel_bt.fit_kernel_bt(features, data, config, init_state=init_state, holdout=holdout)


def _kernel_load(path: str) -> Any:
    return kernel_bt.KernelBTModel.load(path)


def _kernel_rng(model: Any, data: PreferenceData) -> np.random.Generator:
    # The same judgments give the same members: a refill and the held-out score
    # between two answers see one posterior, not two draws of it. Judgments of
    # weight 0 (an untrusted annotator's) are not counted: they change nothing.
    return np.random.default_rng([model.config.seed, 11, int((data.weight > 0).sum())])


def _kernel_posterior(
    model: Any, features: np.ndarray, data: PreferenceData, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, str]:
    """The kernel model is its own calibrated posterior: its samples are the ones
    Thompson sampling draws from, conditioned on the same judgments."""
    return model.posterior(features, data, rng, n)[1], kernel_bt.POSTERIOR_METHOD


def _kernel_outputs(model: Any, features: np.ndarray, needs: str | None, judged: Callable[[], PreferenceData]) -> dict:
    data = judged()
    mean, members = model.posterior(features, data, _kernel_rng(model, data), model.config.n_samples)
    out: dict[str, Any] = {"member_scores": members, "scores": mean.astype(np.float32)}
    if needs == "gradients":
        out["gradients"] = kernel_bt.KernelGradientSource(model, features, data)
    return out


# The posteriors whose leaderboards are calibrated (checked by simulation in
# tests/models_runtime/test_mr_recommend_calibration.py; the linear one made the
# leaderboards of versions published before the kernel model); a version whose
# recommendation came from another method says so on the study page.
CALIBRATED_METHODS = frozenset({recommend.POSTERIOR_METHOD, kernel_bt.POSTERIOR_METHOD})

# The kind a new study gets (``Study.model_type``'s default; the strategy benchmark
# reads it too). Why the kernel model: docs/ARCHITECTURE.md, "The default model".
DEFAULT_KIND = "kernel"


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelKind:
    """One kind of reward model.

    ``config(params, device)`` turns a study's options into the fit's config
    dataclass; ``fit(features, data, config, init_state, holdout=None)`` (``holdout``:
    judgment indices to validate on, fixed by the caller) returns a result with
    ``model``, ``metrics`` and ``device``; ``load(path)`` reads a saved model;
    ``posterior(model, features, data, rng, n)`` gives ``(samples (S, N), method)``
    for recommendations; ``outputs(model, features, needs, judged)`` gives the
    arrays a strategy reads (always ``scores``, and ``needs`` when the kind
    ``provides`` it; ``judged()`` returns the study's judgments, for outputs that
    depend on them)."""

    name: str
    label: str
    provides: frozenset[str]
    config: Callable[[Mapping[str, Any], str], Any]
    fit: Callable[..., Any]
    load: Callable[[str], Any]
    posterior: Callable[..., tuple[np.ndarray, str]]
    outputs: Callable[..., dict]


KINDS: tuple[ModelKind, ...] = (
    ModelKind(
        "mlp", "MLP head over embeddings", frozenset({"scores", "gradients"}),
        _head_config("mlp"), _head_fit, _head_load, _calibrated_posterior, _head_outputs,
    ),
    ModelKind(
        "linear", "Linear head over embeddings", frozenset({"scores", "gradients"}),
        _head_config("linear"), _head_fit, _head_load, _calibrated_posterior, _head_outputs,
    ),
    ModelKind(
        "ensemble", "Anchored ensemble of MLP heads", frozenset({"scores", "member_scores"}),
        _ensemble_config, _ensemble_fit, _ensemble_load, _calibrated_posterior, _ensemble_outputs,
    ),
    ModelKind(
        "kernel", "Bayesian kernel Bradley–Terry (evidence-tuned)",
        frozenset({"scores", "member_scores", "gradients"}),
        _kernel_config, _kernel_fit, _kernel_load, _kernel_posterior, _kernel_outputs,
    ),
)  # fmt: skip
_CATALOGUE = Catalogue(
    KINDS,
    key=lambda kind: kind.name,
    called="a reward-model kind",
    missing=lambda name, known: KeyError(f"unknown reward-model kind {name!r}; known: {', '.join(known)}"),
)
# Add a kind at run time (a plug-in, or a test): ``register(kind)``, or
# ``with registered(kind):`` for the length of a block.
register = _CATALOGUE.register
registered = _CATALOGUE.registered
# The kind called ``name``; ``KeyError`` naming the known kinds otherwise.
get = _CATALOGUE.get
names = _CATALOGUE.keys
kinds = _CATALOGUE.entries


def choices() -> list[tuple[str, str]]:
    """``(name, label)`` of every kind, for ``Study.model_type``."""
    return [(kind.name, kind.label) for kind in kinds()]
