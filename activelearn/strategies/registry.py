"""The catalogue of query strategies: the one place a strategy is named.

Everything else is derived from :data:`STRATEGIES`: the factory
(:func:`get_strategy`), what each strategy needs from the reward model (the loop
checks it against the model kind's outputs, ``models_runtime.kinds``), the choices
of ``Study.strategy``, the strategy benchmark's default list and the parametrisation
of the strategy tests. Adding a strategy is one module (a dataclass with ``name``,
``select`` and ``select_list``) plus one line here; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from activelearn.strategies.apohf import ApohfStrategy
from activelearn.strategies.base import Strategy
from activelearn.strategies.ensemble_based import DoubleThompsonStrategy, InfomaxStrategy
from activelearn.strategies.eubo import EuboStrategy
from activelearn.strategies.least_compared import LeastComparedStrategy
from activelearn.strategies.random_pairs import RandomStrategy
from activelearn.strategies.uncertainty import UncertaintyStrategy
from models_runtime.catalogue import Catalogue

__all__ = [
    "NEEDS",
    "STRATEGIES",
    "StrategyName",
    "StrategySpec",
    "choices",
    "get_spec",
    "get_strategy",
    "names",
    "register",
    "registered",
]

# What a strategy may need from the live reward model (None: nothing, it works
# before the first model). A model kind lists the outputs it provides.
NEEDS = (None, "scores", "member_scores", "gradients")


@dataclass(frozen=True)
class StrategySpec:
    """One strategy: its class (whose ``name`` is the key stored on studies and
    comparisons), the label researchers choose it by, and what it needs from
    the model. The class's dataclass fields are its options
    (``Study.strategy_params``); its ``select_list`` is its listwise variant."""

    factory: type
    label: str
    needs: str | None = None

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ValueError(f"needs must be one of {NEEDS}, got {self.needs!r}")
        if not isinstance(getattr(self.factory, "name", None), str):
            raise ValueError(f"{self.factory.__name__} needs a ``name`` class attribute")

    @property
    def name(self) -> str:
        return self.factory.name

    def options(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.factory)]


STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(RandomStrategy, "Random"),
    StrategySpec(LeastComparedStrategy, "Least compared first"),
    StrategySpec(UncertaintyStrategy, "Uncertainty (closest to 50/50)", needs="scores"),
    StrategySpec(ApohfStrategy, "APOHF (greedy + gradient UCB; kernel model or a single head)", needs="gradients"),
    StrategySpec(DoubleThompsonStrategy, "Double Thompson sampling (kernel or ensemble model)", needs="member_scores"),
    StrategySpec(
        InfomaxStrategy, "Infomax: most member disagreement (kernel or ensemble model)", needs="member_scores"
    ),
    StrategySpec(
        EuboStrategy,
        "EUBO: the pair whose better response is expected best (kernel or ensemble model)",
        needs="member_scores",
    ),
)

_CATALOGUE = Catalogue(
    STRATEGIES,
    key=lambda spec: spec.name,
    called="a strategy",
    missing=lambda name, known: ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(known)}"),
)
# Add a strategy at run time (a plug-in, or a test): ``register(spec)``, or
# ``with registered(spec):`` for the length of a block.
register = _CATALOGUE.register
registered = _CATALOGUE.registered
# The strategy called ``name``; ``ValueError`` listing the known ones otherwise.
get_spec = _CATALOGUE.get
names = _CATALOGUE.keys

# The built-in strategies as an enum, for code that names one (``StrategyName.RANDOM``).
StrategyName = StrEnum("StrategyName", [(spec.name.upper(), spec.name) for spec in STRATEGIES])


def choices() -> list[tuple[str, str]]:
    """``(name, label)`` of every strategy, for ``Study.strategy``."""
    return [(spec.name, spec.label) for spec in _CATALOGUE.entries()]


def get_strategy(name: str, **params: object) -> Strategy:
    """Build the strategy called ``name`` with its parameters.

    Unknown names raise ValueError listing the known ones, and unknown or
    invalid parameters raise ValueError naming them, so a typo in a study's
    configuration fails loudly instead of silently falling back.
    """
    spec = get_spec(name)
    allowed = spec.options()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for strategy {spec.name}; "
            f"known: {', '.join(sorted(allowed)) or 'none'}"
        )
    try:
        return spec.factory(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid parameters for strategy {spec.name}: {exc}") from None
