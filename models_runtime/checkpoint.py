"""Pieces shared by every saved reward model: atomic file writes, the
``config.json`` + safetensors directory format, input checks and warm starts.

A saved model is a directory holding its weights (safetensors) and a ``config.json``
with ``format``, ``format_version``, the model's dataclass config under ``config`` and
whatever else the model needs to rebuild itself (e.g. ``input_dim``). Each file is
written to a temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_FILE",
    "atomic_write",
    "check_features",
    "load_init_state",
    "read_config",
    "write_config",
    "write_tensors",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
ConfigT = TypeVar("ConfigT")


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to
    ``path``; on any error the temporary file is removed and ``path`` is untouched."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_tensors(path: Path, tensors: Mapping[str, torch.Tensor], format_name: str) -> None:
    """Save detached, contiguous CPU copies of ``tensors`` to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(data, tmp, metadata={"format": format_name}))


def write_config(directory: Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta`` as ``directory/config.json``; write it after the weights so a
    complete config means a complete model."""

    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)

    atomic_write(directory / CONFIG_FILE, dump)


def read_config(
    directory: Path,
    *,
    format_name: str,
    format_version: int,
    config_cls: type[ConfigT],
    required: Sequence[str],
    what: str,
) -> tuple[dict[str, Any], ConfigT]:
    """Read ``directory/config.json`` of a model saved in format ``format_name`` and
    return it with its ``config`` rebuilt as ``config_cls`` (unknown fields from newer
    writers are ignored). Raises ``FileNotFoundError`` when ``config.json`` or one of
    the ``required`` entries is missing, ``ValueError`` for another format or a newer
    format version."""
    cfg_path = directory / CONFIG_FILE
    if not all((directory / name).exists() for name in (CONFIG_FILE, *required)):
        raise FileNotFoundError(f"{directory} is not a saved {what} (expected {', '.join((CONFIG_FILE, *required))})")
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    if meta.get("format") != format_name:
        raise ValueError(f"{cfg_path} is not a {format_name} model config")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > format_version:
        raise ValueError(f"{cfg_path} has format_version {version!r}; this code reads up to {format_version}")
    known = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    config = config_cls(**{k: v for k, v in meta.get("config", {}).items() if k in known})
    return meta, config


def check_features(features: np.ndarray, input_dim: int | None = None) -> np.ndarray:
    """``features`` as a C-contiguous float32 ``(items, dim)`` array, checking the
    dimension against ``input_dim`` when given."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D (items, dim) array, got shape {x.shape}")
    if input_dim is not None and x.shape[1] != input_dim:
        raise ValueError(f"features have dimension {x.shape[1]}, model expects {input_dim}")
    return x


def load_init_state(
    module: torch.nn.Module, init_state: Mapping[str, Any] | None, *, optional: Collection[str] = ()
) -> bool:
    """Load a previous model's ``state_dict`` into ``module`` for a warm start when
    every tensor name and shape matches and all values are finite; otherwise leave
    ``module`` as it is and return False (a fresh start). Names in ``optional`` (a
    learned label-flip rate, which a model fitted with a fixed one lacks) may be
    missing on either side: the module then keeps its own value, or the extra tensor
    is ignored."""
    import torch

    if init_state is None:
        return False
    current = module.state_dict()
    given = {k: v for k, v in init_state.items() if k in current or k not in optional}
    if set(given) - set(current) or set(current) - set(given) - set(optional):
        log.info("Ignoring init_state: tensor names differ; using a fresh init.")
        return False
    loaded: dict[str, torch.Tensor] = {}
    for key, ref in current.items():
        if key not in given:
            loaded[key] = ref.detach().to("cpu", copy=True)
            continue
        value = torch.as_tensor(given[key]).detach().to("cpu", ref.dtype)
        if value.shape != ref.shape:
            log.info("Ignoring init_state: %s has shape %s, expected %s.", key, tuple(value.shape), tuple(ref.shape))
            return False
        if not torch.isfinite(value).all():
            log.info("Ignoring init_state: %s has non-finite values.", key)
            return False
        loaded[key] = value.clone()
    module.load_state_dict(loaded)
    return True
