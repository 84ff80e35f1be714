"""The port through which annotation talks to the active-learning loop.

``annotation`` owns the study data and everything people touch; the loop
(``activelearn``) sits above it, reads judgments and writes comparisons and model
versions. When annotation needs the loop (a judgment arrived, the queue ran low,
a study's strategy must be checked), it calls the :class:`Loop` connected here,
never ``activelearn`` itself: ``activelearn`` connects its implementation in
``ActivelearnConfig.ready``. So the dependency between the two apps points one
way, and a test can connect a fake loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class StrategyInfo:
    """What annotation may know about a query strategy: its key, the label
    researchers choose it by, and what it needs from the reward model
    (``None``, ``"scores"``, ``"member_scores"`` or ``"gradients"``)."""

    name: str
    label: str
    needs: str | None


class Loop(Protocol):
    """What annotation asks of the active-learning loop."""

    def judgment_changed(self, *, study_id: int, queue_low_water: int | None = None) -> None:
        """A judgment was given or taken back (called on commit): retrain, top up."""

    def refill_request(self, *, study_id: int) -> None:
        """The queue runs low: choose more comparisons in the background."""

    def candidates_added(self, *, study_id: int) -> None:
        """New candidates committed (call it on commit), or some were found
        without embeddings: embed them in the background, on a queue of their
        own, so no refill or import waits."""

    def refill_now(self, *, study_id: int, use_model: bool = False) -> int:
        """Queue comparisons right now, in this process (random pairs unless
        ``use_model``); returns how many were queued."""

    def refill_fallback(self, *, study_id: int) -> int:
        """Queue a few random pairs right now, in this process, for an annotator
        who found the queue empty; returns how many were queued."""

    def strategies(self) -> Sequence[StrategyInfo]:
        """Every strategy a study may choose."""

    def strategy_check(self, name: str, params: Mapping[str, Any]) -> StrategyInfo:
        """The strategy ``name`` if it exists and accepts ``params``; ``ValueError``
        with a message naming the fault otherwise."""


_connected: Loop | None = None


def connect(loop: Loop) -> None:
    """Make ``loop`` the one annotation calls (``activelearn`` does this at start-up)."""
    global _connected
    _connected = loop


def get() -> Loop:
    """The connected loop; ImproperlyConfigured when none is (``activelearn`` missing from INSTALLED_APPS)."""
    if _connected is None:
        raise ImproperlyConfigured("No active-learning loop is connected: add 'activelearn' to INSTALLED_APPS.")
    return _connected


def strategy_choices() -> list[tuple[str, str]]:
    """``Study.strategy``'s choices: the loop's strategies (a callable, so a new
    strategy needs no migration)."""
    return [(info.name, info.label) for info in get().strategies()]
