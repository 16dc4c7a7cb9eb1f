"""``syncopt train``: fit a dense sync model on labelled clips, with checkpoints and resume.

A run directory holds ``checkpoint.pt`` (model, optimiser, scheduler, epoch; written
atomically after every epoch and loadable with ``weights_only=True``), and at the end
``model.safetensors``, ``config.json`` (model name and preset) and ``report.json``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from syncopt.core.atomic import atomic_path, sha256_file, write_json
from syncopt.core.errors import UsageError, WeightsError
from syncopt.core.log import status
from syncopt.data.datasets import (
    Augment,
    ClipDataset,
    held_out,
    media_splits,
    reads_lips,
    synth_dataset,
)
from syncopt.models.registry import create
from syncopt.models.weights import check_compatible, save_state_dict
from syncopt.training import distributed
from syncopt.training.evaluate import EvalReport, evaluate_dataset
from syncopt.training.finetune import apply_schedule, param_groups, parse_schedule
from syncopt.training.losses import context_frames, sync_losses, usable_frames
from syncopt.training.mixed_precision import Precision


class TrainConfig(BaseModel):
    model: str
    preset: str = "tiny"
    data: str = Field("synth", description="'synth' (embedded generator), a folder of in-sync videos, a "
                                           "manifest .csv (path, offset), or for lip models 'tts:N' (N clips of "
                                           "TTS speech, syncopt.data.ttsclips); '+' mixes sources: "
                                           "'tts:2000+clips.csv'")
    crop: str = Field("detect", description="real data: 'detect' faces or take 'full' frames as face crops")
    train_clips: int = 1000
    val_clips: int = 200
    clip_frames: int = 50
    window: int = 40
    epochs: int = 20
    batch_size: int = Field(16, description="clips per optimiser step, over all processes and accumulation steps")
    grad_accum: int = Field(1, ge=1, description="accumulate gradients over this many micro-batches per step")
    amp: bool = Field(False, description="mixed precision: bf16 autocast on CPU, fp16 with loss scaling on CUDA")
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    time_budget_min: float | None = Field(None, description="stop after the epoch that crosses this budget")
    workers: int = 2
    video_weights: str | None = Field(None, description="pretrained video backbone checkpoint (transfer models)")
    audio_weights: str | None = Field(None, description="pretrained audio backbone file or transformers directory")
    unfreeze_schedule: str | None = Field(None, description="e.g. 'audio=2,video=4' or 'video=never' "
                                                            "(see syncopt.training.finetune)")
    backbone_lr_scale: float = Field(1.0, description="backbones learn at this multiple of the head's rate")
    audio_context: bool = Field(False, description="real-data training: the audio reaches K frames beyond each "
                                                   "video window on both sides, as windows are evaluated")
    mirror: bool = Field(False, description="lip models: half the training windows show the mirror image of the "
                                            "lips (syncopt.data.lipfeatures.mirror_channels)")
    init: str | None = Field(None, description="whole-model weights to start from (fine-tuning): a weights file, a "
                                               "run directory, or 'shipped'; the seed then draws data order and "
                                               "augmentation only")


class EpochStats(BaseModel):
    epoch: int
    loss: float
    train_frame_accuracy: float
    val: EvalReport
    seconds: float


class TrainReport(BaseModel):
    config: TrainConfig
    epochs_done: int
    wall_time_s: float  # this invocation (data generation included)
    train_time_s: float  # all epochs, across resumed invocations
    data_time_s: float
    params: int
    history: list[EpochStats]
    weights: str
    tts_generator: dict | None = None  # syncopt.data.ttsclips.generator_settings when TTS clips were trained on
    averaged_from: list[TrainConfig] | None = Field(None, description="a weight average (syncopt.training.soup): "
                                                                      "the configurations of the runs averaged")
    ensemble_of: list[TrainConfig] | None = Field(None, description="an output ensemble (syncopt.training.ensemble): "
                                                                    "the configurations of its members' runs")
    mirror_views: bool = Field(False, description="an ensemble whose members also read the mirror image of the lips")
    init_sha256: str | None = Field(None, description="sha256 of the --init weights file ('shipped' names a "
                                                      "package version's weights, this the very file)")


def init_weights(config: TrainConfig) -> Path | None:
    """The weights file ``config.init`` names (one-line error when there is none)."""
    if config.init is None:
        return None
    if config.init == "shipped":
        from syncopt.models.sources import shipped_weights

        path = shipped_weights(config.model, config.preset)
        if path is None:
            raise UsageError(f"--init shipped: no shipped weights for {config.model} ({config.preset})")
        return path
    path = Path(config.init)
    path = path / "model.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise UsageError(f"--init {config.init}: no weights file there (a .safetensors file, a run directory, "
                         "or 'shipped')")
    return path


@distributed.process_group
def train(config: TrainConfig, out_dir: str | Path, resume: bool = True) -> TrainReport:
    """Train ``config.model`` and write the run directory; resumes from its checkpoint if present.

    Under torchrun every rank trains its shard of the clips; rank 0 writes the run directory and
    every rank returns its report.
    """
    out = Path(out_dir)
    me = distributed.current()
    micro_batch(config, me)  # a batch that does not split fails before any data is made
    torch.manual_seed(config.seed)
    init = init_weights(config)
    model = create(config.model, config.preset, weights=init, video_weights=config.video_weights,
                   audio_weights=config.audio_weights).train()
    schedule = parse_schedule(config.unfreeze_schedule)
    spec = model.spec
    if "offset_logits" not in spec.output_names:
        raise UsageError(f"model '{config.model}' has no offset_logits output; only dense sync models train here")
    t0 = time.perf_counter()
    lips = reads_lips(spec)
    if config.mirror and not lips:
        raise UsageError(f"--mirror trains on mirrored lip motion; {config.model} reads "
                         f"{spec.preprocessing.video_features}")
    train_set, val_set, max_shift = _datasets(config, spec)
    train_set.augment = Augment(window=config.window, max_shift=max_shift, max_offset=spec.max_offset,
                                audio_per_frame=spec.preprocessing.audio_per_frame, lips=lips,
                                audio_context=spec.max_offset if config.audio_context else 0,
                                mirror=0.5 if config.mirror else 0.0, rng=np.random.default_rng(config.seed + me.rank))
    data_time = time.perf_counter() - t0

    loss_fn = context_loss if config.audio_context else supervised_loss
    history = fit(model, config, train_set, val_set, out, loss_fn, resume=resume, schedule=schedule, t0=t0)
    report = None
    if me.main:
        weights = save_state_dict(model, out / "model.safetensors")
        write_json(out / "config.json", {"model": config.model, "preset": config.preset})
        tts_sources = [n for n in _tts_counts(config.data) if n]
        report = TrainReport(config=config, epochs_done=len(history), wall_time_s=time.perf_counter() - t0,
                             train_time_s=sum(h.seconds for h in history), data_time_s=data_time,
                             params=sum(p.numel() for p in model.parameters()), history=history, weights=str(weights),
                             tts_generator=_tts_settings(config) if tts_sources else None,
                             init_sha256=sha256_file(init) if init is not None else None)
        write_json(out / "report.json", report.model_dump(mode="json"))
    return distributed.from_main(report)


LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def context_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`supervised_loss` on windows whose audio reaches K frames beyond the video on both sides,
    scored on the frames whose video tower stays inside the window (the first and last
    ``(min_frames - 1) / 2`` frames see zero padding): every scored frame then has real video and audio
    around it, as ``syncopt sync`` and ``evaluate --data`` compute frames."""
    outputs = model.forward_context(batch["video"], batch["audio"], audio_valid=batch["audio_valid"])
    margin = (model.spec.min_frames - 1) // 2
    t = torch.arange(batch["labels"].shape[1], device=batch["labels"].device)
    inside = (t >= margin) & (t < batch["labels"].shape[1] - margin)
    mask = context_frames(batch["labels"], batch["valid"], batch["audio_valid"]) & inside[None]
    return sync_losses(outputs, batch["labels"], batch["valid"], mask=mask)["loss"], outputs


def supervised_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training objective of :func:`~syncopt.training.losses.sync_losses` and the model's outputs."""
    outputs = model(video=batch["video"], audio=batch["audio"])
    return sync_losses(outputs, batch["labels"], batch["valid"])["loss"], outputs


def fit(model: nn.Module, config: TrainConfig, train_set: Dataset, val_set: ClipDataset, out: Path,
        loss_fn: LossFn = supervised_loss, extra: nn.Module | None = None, resume: bool = True,
        schedule: dict[str, int] | None = None, t0: float | None = None) -> list[EpochStats]:
    """The epoch loop shared by training, distillation and pruning fine-tunes.

    AdamW with a one-cycle schedule over ``model`` (and ``extra``: modules trained alongside it,
    such as distillation projections, at the head's rate); ``loss_fn(model, batch)`` gives the loss
    and the model's outputs, whose offset logits are scored against ``batch["labels"]``. After every
    epoch the model is validated on ``val_set`` and ``out/checkpoint.pt`` is written atomically;
    an existing checkpoint is resumed from when ``resume``. Returns the history of all epochs.
    """
    t0 = time.perf_counter() if t0 is None else t0
    spec = model.spec
    me = distributed.current()
    model.to(me.device)
    if extra is not None:
        extra.to(me.device)
    micro = micro_batch(config, me)
    # Every rank takes the same number of steps (shards may differ by skipped files), or DDP waits forever.
    steps = int(distributed.reduce([len(train_set) // (micro * config.grad_accum)], "min")[0])
    if steps == 0:
        raise UsageError(f"{len(train_set) * me.world} training clips make no full batch of {config.batch_size}; "
                         f"lower --batch-size or add clips")
    sampler = distributed.EpochShuffle(len(train_set), steps * config.grad_accum * micro, config.seed)
    loader = DataLoader(train_set, batch_size=micro, sampler=sampler)
    groups = param_groups(model, config.lr, config.backbone_lr_scale)
    if extra is not None:
        groups.append({"params": list(extra.parameters()), "lr": config.lr, "name": "extra"})
    trained = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], epochs=config.epochs,
                                                    steps_per_epoch=steps, pct_start=0.15)
    precision = Precision(me.device, config.amp)
    history: list[EpochStats] = []
    start_epoch = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():  # every rank loads it: a restarted job continues on all of them
        state = _load_checkpoint(ckpt, model)
        model.load_state_dict(state["model"])
        if extra is not None:
            extra.load_state_dict(state["extra"])
        optimizer.load_state_dict(state["optimizer"])
        # The one-cycle curve follows this invocation's epoch count, so a run can be extended.
        scheduler.load_state_dict({k: v for k, v in state["scheduler"].items()
                                   if k not in ("total_steps", "_schedule_phases")})
        precision.load_state_dict(state.get("precision", {}))
        start_epoch = int(state["epoch"])
        history = [EpochStats.model_validate_json(h) for h in state["history"]]
        status(f"resuming {config.model} from {ckpt} after epoch {start_epoch}")

    replica, trained_now = None, None
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        if extra is not None:
            extra.train()
        training = apply_schedule(model, schedule or {}, epoch)
        if schedule:
            status(f"epoch {epoch + 1}: training {', '.join(training)}")
        if replica is None or training != trained_now:  # DDP syncs the parameters that train now
            replica, trained_now = distributed.wrap(model), training
        losses, hits, counted = [], 0.0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=None if me.main else True)
        for i, batch in enumerate(bar):
            batch = {k: v.to(me.device) for k, v in batch.items()}
            stepping = (i + 1) % config.grad_accum == 0
            # Gradients are all-reduced only on the micro-batch that ends a step.
            with contextlib.nullcontext() if stepping or replica is model else replica.no_sync():
                with precision.autocast():
                    loss, outputs = loss_fn(replica, batch)
                precision.backward(loss / config.grad_accum)
            if stepping:
                if extra is not None:
                    distributed.average_gradients(extra.parameters())
                precision.step(optimizer, trained, 5.0)
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
            k = spec.max_offset
            mask = usable_frames(batch["labels"], batch["valid"])
            pred = outputs["offset_logits"].argmax(1) - k
            hits += float(((pred == batch["labels"]) & mask).sum())
            counted += float(mask.sum())
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{hits / max(counted, 1):.3f}")
        distributed.average_buffers(model)
        loss_sum, hits, counted = distributed.reduce([sum(losses), hits, counted])
        stats, stop = None, False
        if me.main:  # the other ranks wait in from_main below
            val = evaluate_dataset(model.eval(), val_set)
            stats = EpochStats(epoch=epoch + 1, loss=loss_sum / (len(losses) * me.world),
                               train_frame_accuracy=hits / max(counted, 1), val=val,
                               seconds=time.perf_counter() - t_epoch)
            status(f"epoch {epoch + 1}: loss {stats.loss:.3f}  train frame acc {stats.train_frame_accuracy:.3f}  "
                   f"val acc@15 {val.context_accuracy[15]:.3f} (±1 {val.context_accuracy_pm1[15]:.3f})  "
                   f"val frame acc {val.per_frame_accuracy:.3f}  [{stats.seconds:.0f}s]")
            _save_checkpoint(ckpt, model, optimizer, scheduler, epoch + 1, history + [stats], extra, precision)
            stop = config.time_budget_min is not None and time.perf_counter() - t0 > 60 * config.time_budget_min
            if stop:
                status(f"time budget of {config.time_budget_min} min reached after epoch {epoch + 1}")
        stats, stop = distributed.from_main((stats, stop))
        history.append(stats)
        if stop:
            break
    model.cpu()
    if extra is not None:
        extra.cpu()
    return history


def micro_batch(config: TrainConfig, me: distributed.Rank) -> int:
    """Clips per forward on each rank: ``batch_size`` split over the processes and accumulation steps."""
    parts = me.world * config.grad_accum
    if config.batch_size % parts:
        raise UsageError(f"--batch-size {config.batch_size} does not split over {me.world} process(es) x "
                         f"--grad-accum {config.grad_accum}; use a multiple of {parts}")
    return config.batch_size // parts


def _datasets(config: TrainConfig, spec) -> tuple[ClipDataset, ClipDataset, int]:
    """This rank's training shard, the validation set (rank 0's; empty on the other ranks), and the
    audio shift augmentation they need.

    Synthetic clips carry their own offsets; each rank generates only the clips of its shard.
    Real clips (mostly in sync) get new offsets by shifting the audio window up to ±K frames;
    every 10th clip is held out for validation and each rank decodes only its shard of the rest.
    TTS clips (lip models) are in sync too and take the same shifts; ``a+b`` concatenates sources.
    """
    me = distributed.current()
    val_clips = config.val_clips if me.main else 0
    sources = [s for s in config.data.split("+") if s]
    if not sources:
        raise UsageError("--data is empty")
    if config.data == "synth":
        if spec.preprocessing.video_features == "lips":
            raise UsageError(f"{spec.name} reads face-mesh lip motion and trains on real video: pass --data "
                             "a folder of in-sync videos, a manifest .csv, or tts:N (TTS speech)")
        train_set = synth_dataset(spec, "train", config.train_clips, config.clip_frames, workers=config.workers,
                                  indices=distributed.shard(range(config.train_clips)))
        return train_set, synth_dataset(spec, "val", val_clips, config.clip_frames, workers=config.workers), 0
    if len(sources) > 1 and spec.preprocessing.video_features != "lips":
        raise UsageError(f"mixing data sources ('+') is for lip models; {spec.name} takes one --data")
    parts = []
    for source, tts_count in zip(sources, _tts_counts(config.data)):
        if source == "synth":
            raise UsageError("'synth' (pixel talking heads) does not mix with other sources; lip models take tts:N")
        parts.append(_tts_splits(config, spec, tts_count, val_clips) if tts_count is not None
                     else _media_splits(config, spec, source))
    # New lists: a source that validates on its training clips hands back one dataset as both.
    train_set = ClipDataset([it for t, _ in parts for it in t.items], spec.preprocessing)
    val_set = ClipDataset([it for _, v in parts for it in v.items], spec.preprocessing)
    drop_short((train_set, val_set), config.window + 2 * spec.max_offset)
    return train_set, val_set, spec.max_offset


def drop_short(datasets, need: int) -> None:
    """Remove, in place, real clips (face tracks) shorter than ``need`` frames (window + 2 x max offset:
    shorter ones cannot take new audio offsets); :class:`UsageError` when none is left."""
    for dataset in datasets:
        kept = [it for it in dataset.items if len(it["labels"]) >= need]
        if len(kept) < len(dataset.items):
            status(f"skipped {len(dataset.items) - len(kept)} clips (face tracks) shorter than {need} frames "
                   "(window + 2 x max offset, needed to draw new offsets)")
        if dataset.items and not kept:
            raise UsageError(f"every clip is shorter than {need} frames (window + 2 x max offset), needed to draw "
                             "new offsets; lower --window")
        dataset.items = kept


def _tts_counts(data: str) -> list[int | None]:
    """Per '+'-source of ``data``: the clip count of a ``tts:N`` source (``tts`` alone: 1000), else None."""
    counts = []
    for source in (s for s in data.split("+") if s):
        if source == "tts" or source.startswith("tts:"):
            text = source.partition(":")[2] or "1000"
            if not text.isdigit() or int(text) < 1:
                raise UsageError(f"--data {source}: expected tts:N with N a positive number of clips")
            counts.append(int(text))
        else:
            counts.append(None)
    return counts


def _media_splits(config: TrainConfig, spec, source: str) -> tuple[ClipDataset, ClipDataset]:
    me = distributed.current()
    train_idx, val_idx = held_out(source)
    train_set, val_set, skipped = media_splits(spec, source, config.crop, distributed.shard(train_idx),
                                               val_idx if me.main else [])
    for line in distributed.gathered(skipped):
        status(f"skipped {line}")
    return train_set, val_set


def _tts_settings(config: TrainConfig) -> dict:
    from syncopt.data.ttsclips import TTSConfig, generator_settings

    return generator_settings(TTSConfig(seed=config.seed)) | {
        "train_clips": sum(n for n in _tts_counts(config.data) if n)}


def _tts_splits(config: TrainConfig, spec, count: int, val_clips: int) -> tuple[ClipDataset, ClipDataset]:
    """``count`` TTS training clips (this rank's shard) and up to ``val_clips`` validation clips (a tenth)."""
    from syncopt.data.datasets import LIP_SEGMENT
    from syncopt.data.ttsclips import TTSConfig, tts_dataset

    cfg = TTSConfig(seed=config.seed)

    def progress(i: int, n: int) -> None:
        if i % 100 == 0 or i == n:
            status(f"TTS clips {i}/{n}")

    train_set = tts_dataset(spec, "train", count, cfg, config.workers, indices=distributed.shard(range(count)),
                            segment=LIP_SEGMENT, progress=progress)
    n_val = min(val_clips, max(1, count // 10)) if val_clips else 0
    val_set = tts_dataset(spec, "val", n_val, cfg, config.workers, segment=LIP_SEGMENT)
    return train_set, val_set


def _load_checkpoint(path: Path, model: nn.Module) -> dict:
    """The resume state in ``path``, checked to be readable and to fit ``model``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or unsafe files
        raise WeightsError(f"cannot resume from {path}: truncated or corrupt checkpoint ({type(exc).__name__}); "
                           f"delete it or pass --no-resume") from exc
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "epoch", "history"} <= state.keys():
        raise WeightsError(f"cannot resume from {path}: not a syncopt training checkpoint")
    check_compatible(model, state["model"], f"{model.spec.name} (checkpoint {path})")
    return state


def _save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, history: list[EpochStats],
                     extra: nn.Module | None = None, precision: Precision | None = None) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "epoch": epoch, "history": [h.model_dump_json() for h in history],
             "precision": precision.state_dict() if precision is not None else {}}
    if extra is not None:
        state["extra"] = extra.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


