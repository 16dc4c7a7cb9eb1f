"""Loading and saving state dicts safely: safetensors, or ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from syncopt.core.atomic import atomic_path
from syncopt.core.errors import InputFileError, WeightsError
from syncopt.models import architecture

# BatchNorm counters absent from checkpoints saved before PyTorch 0.4.1 (e.g. the published
# syncnet_v2.model); BatchNorm's own loader fills them in, so they are not reported missing.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` mapping without executing any pickled code.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``. A ``{"state_dict": ...}`` wrapper is unwrapped.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"refusing to load {p.name}: not a plain tensor checkpoint ({_unpickler_reason(exc)})") from exc
    except Exception as exc:  # torch/safetensors raise many types for damaged files
        raise WeightsError(f"cannot read weights {p.name}: truncated or corrupt ({type(exc).__name__})") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{p.name} is not a state dict (a mapping of names to tensors)")
    return dict(state)


def check_compatible(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`WeightsError` listing missing/unexpected keys and shape mismatches, or naming the
    first tensor that holds NaN or inf (every loader calls this before ``load_state_dict``)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = [
        f"{len(items)} {label} ({_preview(items)})"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched))
        if items
    ]
    if problems:
        raise WeightsError(f"weights do not fit {what}: " + "; ".join(problems))
    check_finite(state, f"weights for {what}")


def check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`WeightsError` naming the first floating-point tensor with a NaN or an inf."""
    for name, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        bad = ~torch.isfinite(tensor)
        if count := int(bad.sum()):
            values = tensor[bad]
            kinds = [k for k, hit in (("NaN", torch.isnan(values).any()), ("inf", torch.isinf(values).any())) if hit]
            raise WeightsError(f"{what}: tensor '{name}' holds {' and '.join(kinds)} ({count} of {tensor.numel()} "
                               "values); refusing non-finite weights")


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata in a ``.safetensors`` file's header (empty for other formats)."""
    p = Path(path)
    if p.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(p), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for damaged headers
        raise WeightsError(f"cannot read weights {p.name}: truncated or corrupt ({type(exc).__name__})") from exc


def load_into(model: nn.Module, path: str | os.PathLike, what: str,
              state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Strictly load the weights at ``path`` (``state``: their tensors, when already read) into ``model``
    (after a readable compatibility check).

    Weights of a pruned model carry its architecture in their metadata; ``model`` (a fresh build)
    is shrunk to it first (:mod:`syncopt.models.architecture`).
    """
    state = load_state_dict(path) if state is None else state
    pruned = load_metadata(path).get(architecture.METADATA_KEY)
    if pruned is not None:
        architecture.apply(model, pruned, what)
    check_compatible(model, state, what)
    model.load_state_dict(state, strict=True)
    return model


def save_state_dict(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights atomically as safetensors (with its architecture if it was pruned)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=architecture.metadata(model) or None)
    return Path(path)


def _unpickler_reason(exc: Exception) -> str:
    """The reason in torch's weights-only unpickler message (the "WeightsUnpickler error:" line, without
    the advice around it or its terminal escape codes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", text)
    reason = found.group(1) if found else (text.strip().splitlines() or [type(exc).__name__])[0]
    return reason.strip()[:160]


def _preview(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")
