"""Fine-tuning controls: parameter groups, freezing, progressive unfreezing, discriminative rates.

A model's parameters fall into three groups by name: ``video`` (``video_encoder.backbone.*``),
``audio`` (``audio_encoder.backbone.*``) and ``head`` (everything else: projections, fusion,
correlation, predictor). Models without backbones (``fcn``) have only a head.

A schedule says from which epoch each group trains: ``"audio=2,video=4"`` trains the head
from the start, the audio backbone from epoch 2 and the video backbone from epoch 4 (epochs
counted from 0); ``"video=never"`` keeps the video backbone frozen throughout. Groups not
named train from the start. Backbones learn at ``backbone_lr_scale`` times the head's rate.
"""

from __future__ import annotations

from torch import nn

from syncopt.core.errors import UsageError

GROUPS = ("video", "audio", "head")
_PREFIXES = {"video": "video_encoder.backbone.", "audio": "audio_encoder.backbone."}
NEVER = 1 << 30


def group_of(param_name: str) -> str:
    """The group a parameter belongs to, from its name."""
    for group, prefix in _PREFIXES.items():
        if param_name.startswith(prefix):
            return group
    return "head"


def parse_schedule(text: str | None) -> dict[str, int]:
    """``"audio=2,video=never"`` -> ``{"audio": 2, "video": NEVER}``; one-line errors for bad input."""
    schedule: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        group, sep, when = item.partition("=")
        group, when = group.strip(), when.strip()
        if not sep or group not in GROUPS:
            raise UsageError(f"unfreeze schedule item '{item}' is not GROUP=EPOCH with GROUP in {', '.join(GROUPS)}")
        if when == "never":
            schedule[group] = NEVER
        elif when.isdigit():
            schedule[group] = int(when)
        else:
            raise UsageError(f"unfreeze schedule item '{item}': epoch must be a whole number or 'never'")
    return schedule


def param_groups(model: nn.Module, lr: float, backbone_lr_scale: float) -> list[dict]:
    """Optimizer parameter groups (one per non-empty group, named), backbones at a scaled rate."""
    members: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    for name, param in model.named_parameters():
        members[group_of(name)].append(param)
    return [{"params": params, "lr": lr * (1.0 if group == "head" else backbone_lr_scale), "name": group}
            for group, params in members.items() if params]


def apply_schedule(model: nn.Module, schedule: dict[str, int], epoch: int) -> list[str]:
    """Set ``requires_grad`` for ``epoch``; returns the groups that train in it.

    Frozen backbones are also kept in eval mode (BatchNorm statistics stay as loaded).
    """
    training = {g for g in GROUPS if schedule.get(g, 0) <= epoch}
    if not training:
        raise UsageError(f"the unfreeze schedule leaves nothing to train in epoch {epoch}")
    for name, param in model.named_parameters():
        param.requires_grad_(group_of(name) in training)
    modules = dict(model.named_modules())
    for group, prefix in _PREFIXES.items():
        backbone = modules.get(prefix.rstrip("."))
        if backbone is not None and group not in training:
            backbone.eval()
    return sorted(training)
