"""Video backbones: ``(B, 3, T, H, W) -> (B, out_channels, T)`` per-frame features at the video rate.

Each family lives in its own module with ``PRESETS`` (``(name, preset) -> config``) and
``build(name, preset)``; state-dict layouts match the reference implementations named in each
module, so their checkpoints load strictly with :func:`load_video_weights`. Every backbone
exposes ``out_channels``, ``spatial_stride`` (H and W must be multiples of it) and
``min_frames``. See docs/backbones.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from syncopt.core.errors import UsageError, WeightsError
from syncopt.models.video import i3d, resnet3d, slowfast, timesformer, x3d
from syncopt.models.weights import check_compatible, load_state_dict

_FAMILIES: tuple[ModuleType, ...] = (resnet3d, i3d, x3d, slowfast, timesformer)
VIDEO_BACKBONES: dict[tuple[str, str], ModuleType] = {key: family for family in _FAMILIES for key in family.PRESETS}


def video_backbone_names() -> list[str]:
    """Backbone names, in registration order."""
    return list(dict.fromkeys(name for name, _ in VIDEO_BACKBONES))


def build_video_backbone(name: str, preset: str) -> nn.Module:
    """Build backbone ``name`` at ``preset`` (``"tiny"`` or ``"full"``); :class:`UsageError` if unknown."""
    family = VIDEO_BACKBONES.get((name, preset))
    if family is None:
        raise UsageError(f"unknown video backbone '{name}' preset '{preset}' "
                         f"(backbones: {', '.join(video_backbone_names())}; presets: tiny, full)")
    model = family.build(name, preset)
    model.backbone_name = f"{name} (preset {preset})"
    return model


def load_video_weights(backbone: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Strictly load a reference-layout checkpoint into ``backbone``.

    Accepts safetensors or ``torch.save``d files (``weights_only``), plain or wrapped in
    ``state_dict`` / ``model_state`` (pytorchvideo training checkpoints), with or without a
    ``module.`` (DataParallel) prefix. Any missing, unexpected or mis-shaped key raises a
    one-line :class:`WeightsError`.
    """
    state = _read_checkpoint(path)
    check_compatible(backbone, state, getattr(backbone, "backbone_name", type(backbone).__name__))
    backbone.load_state_dict(state, strict=True)
    return backbone


def _read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        state = load_state_dict(path)
    except WeightsError as exc:
        state = _model_state(Path(path), exc)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _model_state(path: Path, error: WeightsError) -> dict[str, torch.Tensor]:
    """Unwrap ``{"model_state": {...}, "epoch": ..., ...}``; otherwise re-raise ``error``."""
    if path.suffix == ".safetensors":
        raise error
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise error from None
    inner = raw.get("model_state") if isinstance(raw, Mapping) else None
    if not isinstance(inner, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in inner.items()
    ):
        raise error
    return dict(inner)
