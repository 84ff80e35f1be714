"""Choosing the torch device that model code runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["pick_device"]


def pick_device(preference: str = "auto") -> torch.device:
    """Resolve a device preference string to a ``torch.device``. ``"auto"`` (or an empty
    string) picks the first CUDA device when one is usable and the CPU otherwise; ``"cpu"``,
    ``"cuda"`` and ``"cuda:N"`` are honoured as given. Asking for CUDA (or a CUDA index)
    that this machine cannot provide, or for an unrecognised device, raises ``ValueError``
    rather than silently falling back, so a misconfigured worker fails loudly."""
    import torch

    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(pref)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"Unrecognised device {preference!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"Device {preference!r} was requested but CUDA is not available on this "
                "machine (no GPU, or torch was built without CUDA); use 'cpu' or 'auto'."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"Device {preference!r} was requested but only {count} CUDA device(s) are visible.")
        return device
    raise ValueError(f"Unsupported device {preference!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
