"""The loop as annotation sees it: the implementation of ``annotation.loop.Loop``.

``ActivelearnConfig.ready`` connects :data:`LOOP`, so annotation's services,
models and management commands reach the loop without importing this app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from activelearn import refill, triggers
from activelearn.strategies import registry
from annotation.loop import StrategyInfo


class ActiveLearningLoop:
    """Retrains and refills through the debounced triggers; strategies from the registry."""

    def judgment_changed(self, *, study_id: int, queue_low_water: int | None = None) -> None:
        triggers.loop_notify_judgment(study_id=study_id, queue_low_water=queue_low_water)

    def refill_request(self, *, study_id: int) -> None:
        triggers.refill_request(study_id=study_id)

    def candidates_added(self, *, study_id: int) -> None:
        triggers.embed_request(study_id=study_id)

    def refill_now(self, *, study_id: int, use_model: bool = False) -> int:
        return refill.queue_refill(study_id=study_id, use_model=use_model)

    def refill_fallback(self, *, study_id: int) -> int:
        return refill.queue_fallback(study_id=study_id)

    def strategies(self) -> Sequence[StrategyInfo]:
        return [_info(registry.get_spec(name)) for name in registry.names()]

    def strategy_check(self, name: str, params: Mapping[str, Any]) -> StrategyInfo:
        registry.get_strategy(name, **params)
        return _info(registry.get_spec(name))


def _info(spec: registry.StrategySpec) -> StrategyInfo:
    return StrategyInfo(name=spec.name, label=spec.label, needs=spec.needs)


LOOP = ActiveLearningLoop()
