"""Measurements shared by the compression stages: size, MACs and accuracy of a sync model."""

from __future__ import annotations

from pydantic import BaseModel
from torch import nn

from syncopt.data.datasets import ClipDataset
from syncopt.training.evaluate import EvalReport, evaluate_dataset

CONTEXT = 15  # frames of context for the reported clip offset accuracy (SyncNet's usual 15)


class ModelStats(BaseModel):
    name: str
    preset: str
    params: int
    macs: int  # at the spec's standard input (batch 1, 25 frames)
    size_bytes: int  # fp32 weights (parameters and buffers)
    offset_accuracy: float | None = None  # clip offset from 15 frames, exact
    offset_accuracy_pm1: float | None = None
    per_frame_accuracy: float | None = None


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers as stored (a safetensors file adds a small header)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def model_stats(model: nn.Module, dataset: ClipDataset | None = None, report: EvalReport | None = None) -> ModelStats:
    """Params, MACs and size of ``model``; accuracy on ``dataset`` (or from an existing ``report``)."""
    from syncopt.models.complexity import count_macs, count_params

    spec = model.spec
    if report is None and dataset is not None:
        report = evaluate_dataset(model, dataset)
    stats = ModelStats(name=spec.name, preset=spec.preset, params=count_params(model), macs=count_macs(model, spec),
                       size_bytes=state_bytes(model))
    if report is not None:
        stats.offset_accuracy = report.context_accuracy[CONTEXT]
        stats.offset_accuracy_pm1 = report.context_accuracy_pm1[CONTEXT]
        stats.per_frame_accuracy = report.per_frame_accuracy
    return stats


def embedding_width(spec) -> int:
    """Channels of the spec's ``video_emb`` output (equal to ``audio_emb``'s)."""
    return int(next(t for t in spec.outputs if t.name == "video_emb").shape[1])


def frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with gradients off (a teacher or a reference)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()

