"""Parameter and MAC counts, measured by running the model (on the meta device: no compute)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from syncopt.core.spec import ModelSpec


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, spec: ModelSpec, frames: int | None = None, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on the spec's input at ``frames`` (default: standard).

    Counted by torch's FlopCounterMode (convolutions, matmuls, linear layers; elementwise ops
    are not MACs) on a meta-device copy of the model, so nothing is computed or allocated.
    """
    meta_model = _to_meta(model)
    feeds = {k: v.to("meta") for k, v in spec.example_inputs(T=frames, batch=batch).items()}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model(**feeds)
    return counter.get_total_flops() // 2


def _to_meta(model: nn.Module) -> nn.Module:
    if all(p.is_meta for p in model.parameters()):
        return model
    import copy

    return copy.deepcopy(model).to("meta")
