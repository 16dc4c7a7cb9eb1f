"""``syncopt distill``: knowledge distillation from a teacher sync model into a student.

Objective (each part weighted; a zero weight switches it off):

- ``kd``: soft targets on the per-frame offset distributions — KL divergence between the
  teacher's and the student's softmax over the 2K+1 offsets at temperature ``T``, scaled by
  ``T**2`` so its gradients keep their size as ``T`` changes (Hinton et al., "Distilling the
  Knowledge in a Neural Network", 2015);
- ``embed``: feature distillation — the student's per-frame video and audio embeddings pass
  through learned 1x1 projections to the teacher's width and are pulled to the teacher's
  embeddings by cosine distance (hints through a regressor, Romero et al., FitNets, 2015);
- ``corr``: correlation-volume matching — mean squared error between the student's and the
  teacher's (2K+1, T) cosine-similarity maps;
- ``hard``: the supervised loss of :mod:`syncopt.training.train` on labelled clips (0: unlabelled data,
  teacher-only targets).

Teacher and student see the same clips, each in its own input format (e.g. wav2vec 2.0
waveforms for the teacher, MFCC for the student, crops at each model's size), with the same
temporal crops; a pair that reads the same inputs (``fcn_lips`` full into ``fcn_lips`` tiny:
face-mesh lip motion and MFCC, real video only) shares one decoded, augmented copy. On real
video the labels are the random audio shifts of SyncNet's recipe (``hard``), or none
(``hard=0``: the teacher's soft targets alone). Without ``teacher_weights`` the teacher is trained
first with ``syncopt train`` into ``OUT/teacher`` (a cache: a finished teacher run there is loaded,
a partial one resumed). The student's run directory is OUT itself: ``checkpoint.pt`` (resumable), ``model.safetensors``,
``config.json`` and ``report.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn
from torch.utils.data import Dataset

from syncopt.compress.common import ModelStats, embedding_width, frozen, model_stats
from syncopt.core.atomic import write_json
from syncopt.core.errors import UsageError
from syncopt.core.log import status
from syncopt.core.spec import ModelSpec
from syncopt.data.datasets import EVAL_SHIFTS, Augment, ClipDataset, held_out, media_splits, reads_lips, shifted_items
from syncopt.models.registry import create
from syncopt.models.weights import save_state_dict
from syncopt.training import distributed
from syncopt.training.train import EpochStats, TrainConfig, drop_short, fit, micro_batch, train


class DistillConfig(TrainConfig):
    """A student's training config (``model`` is the student) plus the teacher and loss weights."""

    teacher: str = "i3d_wav2vec"
    teacher_preset: str | None = Field(None, description="the teacher's preset (default: preset, the student's)")
    teacher_weights: str | None = Field(None, description="teacher weights file or run directory, 'shipped' for "
                                                          "the package's; None: train it")
    teacher_epochs: int | None = Field(None, description="epochs to train the teacher (default: epochs)")
    temperature: float = 4.0
    kd: float = 1.0
    embed: float = 1.0
    corr: float = 1.0
    hard: float = 1.0


class DistillReport(BaseModel):
    config: DistillConfig
    teacher_source: str  # where the teacher came from: a file, the run cache, or trained now
    teacher: ModelStats
    student: ModelStats
    macs_ratio: float  # student / teacher
    params_ratio: float
    size_ratio: float
    accuracy_ratio: float | None  # student / teacher offset accuracy
    epochs_done: int
    history: list[EpochStats]
    wall_time_s: float  # this invocation, teacher training included
    train_time_s: float  # student epochs, across resumed invocations
    weights: str


def check_pair(teacher: ModelSpec, student: ModelSpec) -> None:
    """Teacher and student must share the timeline and the offset range; :class:`UsageError` if not."""
    t, s = teacher.preprocessing, student.preprocessing
    for what, a, b in (("fps", t.fps, s.fps), ("sample rate", t.sample_rate, s.sample_rate),
                       ("max offset", teacher.max_offset, student.max_offset),
                       ("channel order", t.channel_order, s.channel_order)):
        if a != b:
            raise UsageError(f"teacher {teacher.name} and student {student.name} disagree on {what} ({a} vs {b})")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-frame KL(teacher || student) over offsets at ``temperature``, times T^2 (Hinton et al., 2015)."""
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    log_q = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(1)  # (B, T)
    return kl.mean() * temperature ** 2


class DistillLoss(nn.Module):
    """The weighted distillation objective; holds the learned embedding projections."""

    def __init__(self, student_dim: int, teacher_dim: int, config: DistillConfig) -> None:
        super().__init__()
        self.config = config
        self.video_proj = nn.Conv1d(student_dim, teacher_dim, 1)
        self.audio_proj = nn.Conv1d(student_dim, teacher_dim, 1)

    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                labels: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        from syncopt.training.losses import sync_losses

        cfg = self.config
        parts = {
            "kd": kd_loss(student["offset_logits"], teacher["offset_logits"], cfg.temperature),
            "embed": 0.5 * (_cosine_distance(self.video_proj(student["video_emb"]), teacher["video_emb"])
                            + _cosine_distance(self.audio_proj(student["audio_emb"]), teacher["audio_emb"])),
            "corr": F.mse_loss(student["correlation"], teacher["correlation"]),
        }
        if cfg.hard > 0 and labels is not None:
            parts["hard"] = sync_losses(student, labels, valid)["loss"]
        parts["loss"] = sum(getattr(cfg, name) * value for name, value in parts.items())
        return parts


def _cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(x, y, dim=1)).mean()


class PairedClips(Dataset):
    """The same clips in the student's and the teacher's input formats, cropped alike.

    Items are the student's (``video``, ``audio``, ``labels``, ``valid``) plus ``teacher_video``
    and ``teacher_audio``. Both sides draw their temporal crop (and audio shift, brightness,
    contrast) from generators seeded alike and called in lockstep, so they see the same frames.
    Without ``teacher`` (the two read the same inputs) the teacher gets the student's very tensors.
    """

    def __init__(self, student: ClipDataset, teacher: ClipDataset | None = None, window: int | None = None,
                 max_shift: int = 0, max_offset: int = 15, seed: int = 0) -> None:
        if teacher is not None and len(student) != len(teacher):
            raise UsageError(f"student and teacher datasets differ in size ({len(student)} vs {len(teacher)})")
        self.student, self.teacher = student, teacher
        sides = (student,) if teacher is None else (student, teacher)
        self.augments = [Augment(window=window, max_shift=max_shift, max_offset=max_offset,
                                 audio_per_frame=ds.pre.audio_per_frame, lips=ds.pre.video_features == "lips",
                                 time_masks=0, freq_masks=0, rng=np.random.default_rng(seed))
                         for ds in sides] if window else None

    def __len__(self) -> int:
        return len(self.student)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.student[index]
        t = s if self.teacher is None else self.teacher[index]
        if self.augments is not None:
            s = self.augments[0](s)
            t = s if self.teacher is None else self.augments[1](t)
        return s | {"teacher_video": t["video"], "teacher_audio": t["audio"]}


def same_inputs(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two models read identical inputs (same preprocessing and input tensors)."""
    return a.preprocessing == b.preprocessing and a.inputs == b.inputs


def paired_datasets(config: TrainConfig, student: ModelSpec, teacher: ModelSpec
                    ) -> tuple[PairedClips, ClipDataset, ClipDataset]:
    """Training pairs (this rank's shard) and the validation sets of the student and the teacher
    (rank 0's; empty on the other ranks), from the same clips.

    Synthetic clips are rendered once at the larger crop size (each model's dataset resizes) and
    their audio featurised per model; real clips are decoded per model (the same face tracks).
    """
    check_pair(teacher, student)
    me = distributed.current()
    if config.data == "synth" and any(reads_lips(spec) for spec in (student, teacher)):
        raise UsageError(f"{student.name if reads_lips(student) else teacher.name} reads face-mesh lip motion and "
                         "learns from real video: pass --data a folder of in-sync videos or a manifest .csv")
    shared = same_inputs(student, teacher)
    if config.data == "synth":
        big = max((student, teacher), key=lambda s: s.preprocessing.crop_size)
        wanted = {"train": distributed.shard(range(config.train_clips)),
                  "val": list(range(config.val_clips)) if me.main else []}
        sets = {}
        for split, indices in wanted.items():
            clips = _synth_clips(big, split, indices, config.clip_frames, config.workers)
            sets[split] = tuple(_clip_dataset(clips, spec) for spec in (student, teacher))
        max_shift = 0
    else:
        train_idx, val_idx = held_out(config.data)
        decoded = [media_splits(spec, config.data, config.crop, distributed.shard(train_idx),
                                val_idx if me.main else [])[:2] for spec in ((student,) if shared else (student, teacher))]
        decoded = decoded * 2 if shared else decoded
        sets = {"train": (decoded[0][0], decoded[1][0]), "val": (decoded[0][1], decoded[1][1])}
        for a, b in sets.values():
            if [len(it["labels"]) for it in a.items] != [len(it["labels"]) for it in b.items]:
                raise UsageError(f"{config.data}: student and teacher decode different clips (crop or frame rate)")
        need = config.window + 2 * student.max_offset
        for pair in sets.values():  # both sides alike: the same clips stay
            drop_short(pair[:1] if shared else pair, need)
        # in-sync clips validate at every shift of EVAL_SHIFTS (at offset 0 alone a constant answer scores 1)
        val = [shifted_items(v, EVAL_SHIFTS, student.max_offset) for v in sets["val"]]
        sets["val"] = (val[0], val[0] if shared else val[1])
        max_shift = student.max_offset
    train_sets = sets["train"][:1] if shared else sets["train"]
    pairs = PairedClips(*train_sets, window=config.window, max_shift=max_shift,
                        max_offset=student.max_offset, seed=config.seed + me.rank)
    return pairs, sets["val"][0], sets["val"][1]


def _synth_clips(spec: ModelSpec, split: str, indices: list[int], frames: int, workers: int) -> list:
    from syncopt.data.datasets import DEFAULT_KINDS
    from syncopt.data.synth import SynthConfig, make_clips

    cfg = SynthConfig(crop_size=spec.preprocessing.crop_size, num_frames=frames, max_offset=spec.max_offset)
    return make_clips(split, len(indices), cfg, kinds=DEFAULT_KINDS, workers=workers, indices=indices)


def _clip_dataset(clips: list, spec: ModelSpec) -> ClipDataset:
    from syncopt.data.preprocess import audio_to_tensor

    pre = spec.preprocessing
    items = [{"frames": c.frames, "audio": audio_to_tensor(c.audio, c.frames.shape[0], pre),
              "labels": torch.from_numpy(c.per_frame_offset.astype(np.int64)),
              "valid": torch.from_numpy(c.per_frame_valid.astype(bool)), "offset": c.offset, "kind": c.kind}
             for c in clips]
    return ClipDataset(items, pre)


def obtain_teacher(config: DistillConfig, out: Path) -> tuple[nn.Module, str]:
    """The teacher model and a line saying where it came from (file, cache, or trained now)."""
    preset = config.teacher_preset or config.preset
    if config.teacher_weights is not None:
        from syncopt.models.sources import resolve

        shipped = config.teacher_weights == "shipped"  # the weights the package ships for the teacher
        source = resolve(config.teacher, preset, None if shipped else config.teacher_weights, shipped=shipped)
        return source.build(), f"teacher {source.name} ({source.preset}) from {source.weights}"
    run = out / "teacher"
    teacher_config = TrainConfig(model=config.teacher, preset=preset, data=config.data, crop=config.crop,
                                 train_clips=config.train_clips, val_clips=config.val_clips,
                                 clip_frames=config.clip_frames, window=config.window,
                                 epochs=config.teacher_epochs or config.epochs, batch_size=config.batch_size,
                                 lr=config.lr, seed=config.seed, workers=config.workers,
                                 grad_accum=config.grad_accum, amp=config.amp)
    report = run / "report.json"
    if report.is_file() and (run / "model.safetensors").is_file():
        from syncopt.training.train import TrainReport

        cached = TrainReport.model_validate_json(report.read_text())
        if cached.config == teacher_config:
            teacher = create(config.teacher, preset, weights=run / "model.safetensors")
            return teacher, f"teacher {config.teacher} ({preset}) loaded from the run cache {run}"
    status(f"no teacher weights given: training teacher {config.teacher} ({preset}) with syncopt train "
               f"for {teacher_config.epochs} epochs into {run}")
    done = train(teacher_config, run)
    teacher = create(config.teacher, preset, weights=done.weights)
    return teacher, f"teacher {config.teacher} ({preset}) trained now with syncopt train into {run}"


@distributed.process_group
def distill(config: DistillConfig, out_dir: str | Path, resume: bool = True) -> DistillReport:
    """Distil ``config.teacher`` into the student ``config.model``; writes the run directory OUT.

    Under torchrun the student is trained data-parallel; every rank runs the frozen teacher on its
    own shard (no DDP wrapper, no gradients), rank 0 writes OUT and every rank returns its report.
    """
    out = Path(out_dir)
    me = distributed.current()
    micro_batch(config, me)  # a batch that does not split fails before the teacher or data are made
    t0 = time.perf_counter()
    student_spec = create(config.model, config.preset).spec
    teacher_spec = create(config.teacher, config.teacher_preset or config.preset).spec
    check_pair(teacher_spec, student_spec)
    teacher, source = obtain_teacher(config, out)
    status(source)
    frozen(teacher)
    torch.manual_seed(config.seed)
    student = create(config.model, config.preset).train()
    pairs, val_student, val_teacher = paired_datasets(config, student_spec, teacher_spec)
    objective = DistillLoss(embedding_width(student_spec), embedding_width(teacher.spec), config)  # an ensemble is wider
    teacher.to(me.device)
    history = fit(student, config, pairs, val_student, out, loss_fn=distill_step(teacher, objective),
                  extra=objective, resume=resume, t0=t0)
    teacher.cpu()
    return distributed.from_main(_write_run(config, out, source, teacher, val_teacher, student, history, t0)
                                 if me.main else None)


def _write_run(config: DistillConfig, out: Path, source: str, teacher: nn.Module, val_teacher: ClipDataset,
               student: nn.Module, history: list[EpochStats], t0: float) -> DistillReport:
    """Write the student's weights, config and report into ``out``; returns the report."""
    weights = save_state_dict(student, out / "model.safetensors")
    write_json(out / "config.json", {"model": config.model, "preset": config.preset})
    teacher_stats = model_stats(teacher, val_teacher)
    student_stats = model_stats(student, report=history[-1].val)
    report = DistillReport(
        config=config, teacher_source=source, teacher=teacher_stats, student=student_stats,
        macs_ratio=student_stats.macs / teacher_stats.macs, params_ratio=student_stats.params / teacher_stats.params,
        size_ratio=student_stats.size_bytes / teacher_stats.size_bytes,
        accuracy_ratio=(student_stats.offset_accuracy / teacher_stats.offset_accuracy
                        if teacher_stats.offset_accuracy else None),
        epochs_done=len(history), history=history, wall_time_s=time.perf_counter() - t0,
        train_time_s=sum(h.seconds for h in history), weights=str(weights))
    write_json(out / "report.json", report.model_dump(mode="json"))
    return report


def distill_step(teacher: nn.Module, objective: DistillLoss):
    """A :func:`syncopt.training.train.fit` loss function: run the frozen teacher on its inputs, then the objective."""

    def step(student: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            target = teacher(video=batch["teacher_video"], audio=batch["teacher_audio"])
        outputs = student(video=batch["video"], audio=batch["audio"])
        return objective(outputs, target, batch["labels"], batch["valid"])["loss"], outputs

    return step

