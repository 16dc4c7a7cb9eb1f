"""``syncopt prune``: structured channel pruning with Torch-Pruning's dependency graph.

Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) groups every
channel that must go together — a convolution's outputs, the BatchNorm after it, the next
layer's inputs, residual and concatenation partners, depthwise groups, the gates of channel
attention — across the Conv3d/Conv2d/Conv1d layers of both towers and the predictor.

What is kept: the embedding widths (the correlation needs video and audio widths equal, and
the spec names them) — the towers' final projections and the predictor's output layer are
ignored — and the local temporal/cross-modal attention blocks, which work on the embeddings;
while the graph is traced they are swapped for identities (their shifted-window loop makes the
graph trace explode) and put back afterwards.

Criteria: ``magnitude`` (L1 of each channel), ``taylor`` (first-order Taylor, |w * dL/dw|, from
a labelled batch) and ``group_norm`` (L2 over the whole coupled group). Amount: a channel ratio
(uniform per layer, global, or per named layer) or a MAC budget (``macs``: the pruned model's
MACs as a fraction of the original's), reached in ``steps`` prune -> fine-tune rounds, each
fine-tune optionally distilled from the unpruned model.

A pruned model's weights carry its architecture (the sizes of every resized layer) in their
safetensors metadata (:mod:`syncopt.models.architecture`), so ``create(name, weights=...)``
rebuilds it everywhere: no pickles, no sidecar file.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from syncopt.compress.common import ModelStats, embedding_width, frozen, model_stats
from syncopt.core.atomic import write_json
from syncopt.core.errors import UsageError
from syncopt.core.log import status
from syncopt.models import architecture
from syncopt.models.ensemble import SyncEnsemble
from syncopt.models.sources import resolve
from syncopt.models.weights import save_state_dict
from syncopt.training.train import EpochStats, TrainConfig, fit

CRITERIA = ("magnitude", "taylor", "group_norm")


class PruneConfig(TrainConfig):
    """What to prune and how; the inherited fields configure each fine-tune round (``epochs`` per round)."""

    weights: str | None = Field(None, description="weights file or run directory (train, distill or prune)")
    criterion: Literal["magnitude", "taylor", "group_norm"] = "group_norm"
    macs: float | None = Field(0.5, description="target MACs as a fraction of the original (None: use ratio)")
    ratio: float | None = Field(None, description="channel ratio removed per layer (or globally)")
    layer_ratios: dict[str, float] = Field(default_factory=dict, description="module name -> its own ratio")
    global_pruning: bool = False
    steps: int = Field(1, description="prune -> fine-tune rounds")
    epochs: int = Field(0, description="fine-tune epochs per round (0: prune only)")
    final_epochs: int = Field(0, description="extra fine-tune epochs after the last round (recovery at the final size)")
    kd: bool = Field(True, description="distil the fine-tune from the unpruned model")
    lr: float = 1e-3


class PruneReport(BaseModel):
    config: PruneConfig
    original: ModelStats
    pruned: ModelStats
    macs_ratio: float  # pruned / original
    params_ratio: float
    accuracy_drop: float | None  # points of offset accuracy lost (original - pruned), x100
    history: list[EpochStats]
    wall_time_s: float
    weights: str  # model.safetensors, the pruned architecture in its metadata


@contextlib.contextmanager
def attention_hidden(model: nn.Module) -> Iterator[None]:
    """Swap local attention blocks (they act on the kept embeddings) for identities while tracing."""
    from syncopt.models.layers import CrossModalAttention, LocalAttention

    swapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, (LocalAttention, CrossModalAttention)):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            swapped.append((parent, child, module))
            setattr(parent, child, _Identity(isinstance(module, CrossModalAttention)))
    try:
        yield
    finally:
        for parent, child, module in swapped:
            setattr(parent, child, module)


class _Identity(nn.Module):
    def __init__(self, pair: bool) -> None:
        super().__init__()
        self.pair = pair

    def forward(self, x, *rest):
        return (x, *rest) if self.pair else x


def kept_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose outputs define the spec's widths: the towers' last projections, the predictor's head."""
    kept = [model.predictor.refine[-1]]
    for tower in (model.video_encoder, model.audio_encoder):
        kept.append(tower.projection[-1])
    return kept


def _importance(criterion: str):
    import torch_pruning as tp

    return {"magnitude": lambda: tp.importance.MagnitudeImportance(p=1),
            "taylor": lambda: tp.importance.TaylorImportance(),
            "group_norm": lambda: tp.importance.GroupMagnitudeImportance(p=2)}[criterion]()


def make_pruner(model: nn.Module, config: PruneConfig, max_ratio: float, iterative_steps: int):
    """A Torch-Pruning MetaPruner over ``model`` (attention hidden while the graph is traced)."""
    import torch_pruning as tp

    modules = dict(model.named_modules())
    unknown = sorted(set(config.layer_ratios) - set(modules))
    if unknown:
        raise UsageError(f"layer_ratios names unknown modules: {', '.join(unknown)}")
    example = model.spec.example_inputs(T=max(8, model.spec.min_frames))
    with attention_hidden(model):
        return tp.pruner.MetaPruner(
            model, example_inputs=example, forward_fn=lambda m, feeds: m(**feeds),
            output_transform=lambda out: sum(v.sum() for v in out.values()),
            importance=_importance(config.criterion), global_pruning=config.global_pruning,
            pruning_ratio=max_ratio, iterative_steps=iterative_steps, max_pruning_ratio=0.95,
            pruning_ratio_dict={modules[n]: r for n, r in config.layer_ratios.items()} or None,
            ignored_layers=kept_layers(model))


def prune_model(model: nn.Module, config: PruneConfig, finetune=None, taylor_data=None) -> nn.Module:
    """Prune ``model`` in place in ``config.steps`` rounds; ``finetune(model, round)`` runs after each.
    ``taylor_data``: the clips of the Taylor criterion's batch (default: synthetic ``train`` clips)."""
    from syncopt.models.complexity import count_macs

    spec = model.spec
    base = count_macs(model, spec)
    by_macs = config.ratio is None and not config.layer_ratios
    if by_macs and not (config.macs is not None and 0 < config.macs < 1):
        raise UsageError(f"MAC budget must be a fraction in (0, 1), got {config.macs}")
    fine = 200  # MAC mode: many small steps, stop once under the round's budget
    pruner = make_pruner(model, config, 0.95 if by_macs else (config.ratio or 0.0),
                         fine if by_macs else config.steps)
    batch = _taylor_batch(spec, config, taylor_data) if config.criterion == "taylor" else None
    for round_ in range(1, config.steps + 1):
        if by_macs:
            target = base * (1 - (1 - config.macs) * round_ / config.steps)
            while count_macs(model, spec) > target and pruner.current_step < fine:
                _step(model, pruner, batch)
        else:
            _step(model, pruner, batch)
        status(f"prune round {round_}/{config.steps}: MACs x{count_macs(model, spec) / base:.3f}")
        architecture.record(model)
        if finetune is not None:
            finetune(model, round_)
    return model


def _step(model: nn.Module, pruner, batch: dict | None) -> None:
    if batch is not None:  # Taylor importance needs gradients of the training loss
        from syncopt.training.train import supervised_loss

        model.zero_grad()
        supervised_loss(model.train(), batch)[0].backward()
    with attention_hidden(model):
        pruner.step()
    model.zero_grad(set_to_none=True)
    model.eval()


def _taylor_batch(spec, config: PruneConfig, data=None) -> dict[str, torch.Tensor]:
    from syncopt.data.datasets import synth_dataset

    if data is None:
        data = synth_dataset(spec, "train", min(config.batch_size, 16), config.clip_frames)
    else:  # real clips differ in length: the first of them, cut to the shortest
        data = [data[i] for i in range(min(len(data), config.batch_size, 16))]
        t = min(len(it["labels"]) for it in data)
        data = [{"video": it["video"][:, :t], "audio": it["audio"][..., :it["audio"].shape[-1] * t // len(it["labels"])],
                 "labels": it["labels"][:t], "valid": it["valid"][:t]} for it in data]
    items = [data[i] for i in range(len(data))]
    return {k: torch.stack([it[k] for it in items]) for k in ("video", "audio", "labels", "valid")}


def save_pruned(model: nn.Module, out: Path) -> Path:
    """Write ``model.safetensors`` (architecture in its metadata) and ``config.json`` into ``out``."""
    weights = save_state_dict(model, out / "model.safetensors")
    write_json(out / "config.json", {"model": model.spec.name, "preset": model.spec.preset})
    return weights


def prune(config: PruneConfig, out_dir: str | Path, source: str | None = None) -> PruneReport:
    """Prune ``source`` (a run directory, or ``config.model`` with ``config.weights``) into OUT."""
    from syncopt.compress.distill import DistillConfig, DistillLoss, distill_step
    from syncopt.data.datasets import Augment, reads_lips, synth_dataset

    out = Path(out_dir)
    t0 = time.perf_counter()
    model = resolve(source or config.model, config.preset, config.weights).build()
    if isinstance(model, SyncEnsemble):
        raise UsageError(f"{source or config.model} is an ensemble of {model.spec.name} runs: prune a member's run")
    config = config.model_copy(update={"model": model.spec.name, "preset": model.spec.preset})
    spec = model.spec
    reference = frozen(copy.deepcopy(model))
    clips, val = _clips(spec, config)
    original = model_stats(reference, val)
    history: list[EpochStats] = []

    def finetune(net: nn.Module, round_: int) -> None:
        epochs = config.epochs + (config.final_epochs if round_ == config.steps else 0)
        if epochs <= 0:
            return
        torch.manual_seed(config.seed + round_)
        if not clips:
            clips.append(synth_dataset(spec, "train", config.train_clips, config.clip_frames, workers=config.workers))
        train_set = copy.copy(clips[0])
        real = config.data != "synth"  # in-sync real clips: new offsets from audio shifts
        train_set.augment = Augment(window=config.window, max_shift=spec.max_offset if real else 0,
                                    max_offset=spec.max_offset, audio_per_frame=spec.preprocessing.audio_per_frame,
                                    lips=reads_lips(spec), rng=np.random.default_rng(config.seed + round_))
        kwargs = {}
        if config.kd:
            objective = DistillLoss(embedding_width(spec), embedding_width(spec), DistillConfig(model=spec.name, teacher=spec.name))
            kwargs = {"loss_fn": distill_step(reference, objective), "extra": objective}
            train_set = _SelfPaired(train_set)
        history.extend(fit(net, config.model_copy(update={"epochs": epochs}), train_set, val, out / f"round{round_}",
                           resume=True, **kwargs))

    prune_model(model, config, finetune, taylor_data=clips[0] if clips else None)
    weights = save_pruned(model, out)
    pruned = model_stats(model.eval(), val)
    report = PruneReport(config=config, original=original, pruned=pruned, macs_ratio=pruned.macs / original.macs,
                         params_ratio=pruned.params / original.params,
                         accuracy_drop=100 * (original.offset_accuracy - pruned.offset_accuracy),
                         history=history, wall_time_s=time.perf_counter() - t0, weights=str(weights))
    write_json(out / "report.json", report.model_dump(mode="json"))
    return report


def _clips(spec, config: PruneConfig) -> tuple[list, object]:
    """``([training clips], validation clips)`` of real data (``config.data``: every 10th entry validates,
    at every audio shift of ``EVAL_SHIFTS``), or ``([], synthetic val clips)``: synthetic training clips
    are generated on the first fine-tune."""
    from syncopt.data.datasets import (
        EVAL_SHIFTS,
        held_out,
        media_splits,
        shifted_items,
        synth_dataset,
    )
    from syncopt.training.train import drop_short

    if config.data == "synth":
        return [], synth_dataset(spec, "val", config.val_clips, config.clip_frames, workers=config.workers)
    train_idx, val_idx = held_out(config.data)
    train_set, val_set, skipped = media_splits(spec, config.data, config.crop, train_idx, val_idx)
    for line in skipped:
        status(f"skipped {line}")
    drop_short((train_set, val_set), config.window + 2 * spec.max_offset)
    return [train_set], shifted_items(val_set, EVAL_SHIFTS, spec.max_offset)


class _SelfPaired(torch.utils.data.Dataset):
    """Items of one dataset fed to a teacher with the same spec (the unpruned model)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.dataset[index]
        return item | {"teacher_video": item["video"], "teacher_audio": item["audio"]}

