"""Query-selection strategies: pure numpy code behind one interface.

See README.md beside this file for what each strategy does and costs, and
``registry.py`` for the catalogue every other part of prefloop reads.
"""

from activelearn.strategies.base import ScoredList, ScoredPair, SelectionInput, Strategy
from activelearn.strategies.registry import StrategyName, StrategySpec, get_spec, get_strategy

__all__ = (
    "ScoredList",
    "ScoredPair",
    "SelectionInput",
    "Strategy",
    "StrategyName",
    "StrategySpec",
    "get_spec",
    "get_strategy",
)
