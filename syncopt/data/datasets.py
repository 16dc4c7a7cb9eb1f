"""Datasets of labelled clips in a model's input format, with training augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from syncopt.preprocess import audio_to_tensor, frames_to_tensor
from syncopt.spec import ModelSpec, Preprocessing

DEFAULT_KINDS = {"constant": 0.7, "drift": 0.15, "cutin": 0.15}


@dataclass
class Augment:
    """Training augmentation: temporal crop/jitter, colour jitter, SpecAugment-style masks."""

    window: int | None = None  # random temporal crop of this many frames (None: whole clip)
    brightness: float = 0.15  # +- fraction of the pixel range
    contrast: float = 0.15
    time_masks: int = 2  # MFCC time masks of up to 8 steps (2 frames)
    freq_masks: int = 1  # MFCC frequency masks of up to 2 coefficients
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __call__(self, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        item = dict(item)
        t = item["labels"].shape[0]
        if self.window is not None and self.window < t:
            s = int(self.rng.integers(0, t - self.window + 1))
            item["video"] = item["video"][:, s:s + self.window]
            item["audio"] = item["audio"][..., 4 * s:4 * (s + self.window)]
            item["labels"] = item["labels"][s:s + self.window]
            item["valid"] = item["valid"][s:s + self.window]
        scale = 1 + self.rng.uniform(-self.contrast, self.contrast)
        shift = self.rng.uniform(-self.brightness, self.brightness) * 2
        item["video"] = item["video"] * scale + shift
        audio = item["audio"].clone()
        for _ in range(self.time_masks):
            w, s = int(self.rng.integers(0, 9)), int(self.rng.integers(0, audio.shape[-1]))
            audio[..., s:s + w] = 0
        for _ in range(self.freq_masks):
            w, s = int(self.rng.integers(0, 3)), int(self.rng.integers(1, audio.shape[-2]))
            audio[..., s:s + w, :] = 0
        item["audio"] = audio
        return item


class ClipDataset(Dataset):
    """In-memory clips, kept as uint8 frames and MFCC; items are the model's inputs:
    ``video`` (3,T,S,S) normalised per the spec, ``audio`` (1,13,4T), ``labels`` (T,) per-frame
    offsets and ``valid`` (T,) bool. ``items[i]`` also holds the clip ``offset`` and ``kind``."""

    def __init__(self, items: list[dict], pre: Preprocessing, augment: Augment | None = None) -> None:
        self.items = items
        self.pre = pre
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        tensors = {k: item[k] for k in ("audio", "labels", "valid")}
        tensors["video"] = frames_to_tensor(item["frames"], self.pre)
        return self.augment(tensors) if self.augment is not None else tensors


def synth_dataset(spec: ModelSpec, split: str, count: int, num_frames: int = 50,
                  kinds: dict[str, float] | None = None, workers: int = 1, **config) -> ClipDataset:
    """Generate ``count`` synthetic clips of ``split`` at the spec's crop size."""
    from syncopt.data.synth import SynthConfig, make_clips

    cfg = SynthConfig(crop_size=spec.preprocessing.crop_size, num_frames=num_frames,
                      max_offset=spec.max_offset, **config)
    clips = make_clips(split, count, cfg, kinds=kinds or DEFAULT_KINDS, workers=workers)
    pre = spec.preprocessing
    items = [
        {
            "frames": c.frames,
            "audio": audio_to_tensor(c.audio, c.frames.shape[0], pre),
            "labels": torch.from_numpy(c.per_frame_offset.astype(np.int64)),
            "valid": torch.from_numpy(c.per_frame_valid.astype(bool)),
            "offset": c.offset,
            "kind": c.kind,
        }
        for c in clips
    ]
    return ClipDataset(items, pre)
