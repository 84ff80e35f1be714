"""Query-selection strategies: pure numpy code behind one interface.

See README.md beside this file for what each strategy does and costs.
"""

from activelearn.strategies.base import (
    ScoredPair,
    SelectionInput,
    Strategy,
    StrategyName,
    get_strategy,
)

__all__ = ("ScoredPair", "SelectionInput", "Strategy", "StrategyName", "get_strategy")
