"""What ``syncopt models`` reports: each registered model's size and cost, measured."""

from __future__ import annotations

import torch
from pydantic import BaseModel

from syncopt.core.errors import UsageError
from syncopt.models.complexity import count_macs, count_params
from syncopt.models.registry import create, get_entry, model_names


class ModelInfo(BaseModel):
    name: str
    preset: str
    summary: str
    params: int
    macs: int
    frames: int
    inputs: dict[str, str]
    outputs: list[str]
    min_frames: int
    max_offset: int


def describe_model(name: str, preset: str) -> ModelInfo:
    """Build ``name`` on the meta device and count its parameters and MACs at the standard input."""
    with torch.device("meta"):
        model = create(name, preset)
    spec = model.spec
    return ModelInfo(
        name=name,
        preset=preset,
        summary=get_entry(name).summary,
        params=count_params(model),
        macs=count_macs(model, spec),
        frames=spec.standard_frames,
        inputs={t.name: "x".join(map(str, t.shape)) for t in spec.inputs},
        outputs=spec.output_names,
        min_frames=spec.min_frames,
        max_offset=spec.max_offset,
    )


def describe_models(preset: str = "full") -> list[ModelInfo]:
    """:func:`describe_model` for every registered model; ``preset='all'`` lists every preset."""
    if preset not in ("tiny", "full", "all"):
        raise UsageError(f"unknown preset '{preset}' (choose tiny, full or all)")
    rows = []
    for name in model_names():
        presets = get_entry(name).presets if preset == "all" else (preset,)
        rows += [describe_model(name, p) for p in presets if p in get_entry(name).presets]
    return rows
