"""Validation of a study's reward-model options (``Study.model_params``).

Kept free of model imports so the Study model can use it as a field validator.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

# name -> (type, check, message)
_MODEL_PARAMS: dict[str, tuple[type, Any, str]] = {
    "ties": (str, lambda v: v in {"davidson", "rao_kupper", "soft"}, "one of davidson, rao_kupper, soft"),
    "label_flip_rate": (float, lambda v: 0.0 <= v < 0.5, "a number in [0, 0.5)"),
    "hidden": (int, lambda v: 1 <= v <= 4096, "an integer from 1 to 4096"),
    "l2": (float, lambda v: v >= 0.0, "a number ≥ 0"),
    "seed": (int, lambda v: v >= 0, "an integer ≥ 0"),
    "n_members": (int, lambda v: 2 <= v <= 64, "an integer from 2 to 64"),
    "prior_scale": (float, lambda v: v >= 0.0, "a number ≥ 0"),
}
MODEL_PARAM_KEYS = frozenset(_MODEL_PARAMS)


def validate_model_params(value: Any) -> None:
    """Refuse unknown keys and out-of-range values with a message naming them."""
    if not isinstance(value, dict):
        raise ValidationError("Model options must be a JSON object.")
    errors = []
    for key, raw in value.items():
        if key not in _MODEL_PARAMS:
            errors.append(f"unknown option “{key}” (known: {', '.join(sorted(MODEL_PARAM_KEYS))})")
            continue
        kind, check, expected = _MODEL_PARAMS[key]
        try:
            ok = not isinstance(raw, bool) and check(kind(raw))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            errors.append(f"“{key}” must be {expected}, got {raw!r}")
    if errors:
        raise ValidationError("; ".join(errors))
