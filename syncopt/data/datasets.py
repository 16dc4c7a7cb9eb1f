"""Datasets of labelled clips in a model's input format, with training augmentation."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from syncopt.core.errors import InputFileError, SyncoptError, UsageError
from syncopt.core.spec import ModelSpec, Preprocessing
from syncopt.data.lipfeatures import mirror_channels
from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor

DEFAULT_KINDS = {"constant": 0.7, "drift": 0.15, "cutin": 0.15}
LIP_SEGMENT = 100  # frames: real lip-model clips are cut into segments of about this length


@dataclass
class Augment:
    """Training augmentation: temporal crop/jitter, colour jitter, SpecAugment-style masks."""

    window: int | None = None  # random temporal crop of this many frames (None: whole clip)
    max_shift: int = 0  # also shift the audio window by up to this many frames (new offsets; real data)
    max_offset: int = 15  # labels stay within -max_offset..max_offset
    brightness: float = 0.15  # +- fraction of the pixel range
    contrast: float = 0.15
    time_masks: int = 2  # audio time masks of up to 2 frames
    freq_masks: int = 1  # MFCC frequency masks of up to 2 coefficients (none on waveforms)
    audio_per_frame: int = 4  # audio steps per video frame (the spec's Preprocessing.audio_per_frame)
    lips: bool = False  # video is lip motion (Preprocessing.video_features == "lips"), not pixels
    jitter: float = 0.3  # lip motion: Gaussian landmark noise up to this std (units of the track's RMS motion)
    audio_noise: float = 0.3  # lip models: Gaussian noise up to this std on the clip-normalised MFCC
    tempo: float = 0.15  # lip models: stretch both streams by up to this fraction (speaking rate)
    audio_context: int = 0  # the audio window reaches this many frames beyond the video window on each side
    mirror: float = 0.0  # lip motion: the probability that a window shows the mirror image of the lips
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __call__(self, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        item = dict(item)
        if self.lips and self.tempo > 0:
            item = self._tempo(item)
        t = item["labels"].shape[0]
        if self.window is not None and self.audio_context > 0:
            s, d = self._context_crop(item["labels"], t)
            item = item | self._context_audio(item["audio"], s - d, t)  # video t' matches audio t' - (o - d)
            item["video"] = item["video"][:, s:s + self.window]
            item["labels"] = item["labels"][s:s + self.window] - d
            item["valid"] = item["valid"][s:s + self.window]
        elif self.window is not None and self.window < t:
            s = int(self.rng.integers(0, t - self.window + 1))
            d = self._audio_shift(item["labels"], s, t)
            a = s - d  # audio window start: video t' then matches audio t' - (o - d)
            item["video"] = item["video"][:, s:s + self.window]
            step = self.audio_per_frame
            item["audio"] = item["audio"][..., step * a:step * (a + self.window)]
            item["labels"] = item["labels"][s:s + self.window] - d
            item["valid"] = item["valid"][s:s + self.window]
        if self.lips:  # lip motion: articulation amplitude and landmark jitter; noise on the normalised MFCC
            amplitude = np.exp(self.rng.uniform(-np.log(1.5), np.log(1.5)))
            item["video"] = item["video"] * amplitude + self._noise(item["video"], self.jitter)
            item["audio"] = item["audio"] + self._noise(item["audio"], self.audio_noise)
        else:
            scale = 1 + self.rng.uniform(-self.contrast, self.contrast)
            shift = self.rng.uniform(-self.brightness, self.brightness) * 2
            item["video"] = item["video"] * scale + shift
        audio = item["audio"].clone()
        for _ in range(self.time_masks):
            w = int(self.rng.integers(0, 2 * self.audio_per_frame + 1))
            s = int(self.rng.integers(0, audio.shape[-1]))
            audio[..., s:s + w] = 0
        for _ in range(self.freq_masks if audio.dim() == 3 else 0):
            w, s = int(self.rng.integers(0, 3)), int(self.rng.integers(1, audio.shape[-2]))
            audio[..., s:s + w, :] = 0
        item["audio"] = audio
        if self.lips and self.mirror > 0 and self.rng.uniform() < self.mirror:
            index, sign = mirror_channels()
            item["video"] = item["video"][index] * torch.tensor(sign)[:, None]
        return item

    def _tempo(self, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Both streams stretched in time by one factor in ``1 +- tempo`` (a faster or slower speaker);
        needs a constant-offset clip, as real in-sync clips are."""
        labels = item["labels"]
        if bool((labels != labels[0]).any()):
            return item
        t = max(1, round(labels.shape[0] * float(self.rng.uniform(1 - self.tempo, 1 + self.tempo))))
        video = F.interpolate(item["video"][None], size=t, mode="linear", align_corners=False)[0]
        audio = F.interpolate(item["audio"][None], size=(item["audio"].shape[-2], self.audio_per_frame * t),
                              mode="bilinear", align_corners=False)[0]
        return item | {"video": video, "audio": audio, "labels": labels[:1].expand(t).clone(),
                       "valid": item["valid"][:1].expand(t).clone()}

    def _noise(self, like: torch.Tensor, most: float) -> torch.Tensor:
        """Gaussian noise shaped like ``like``, its std drawn uniformly from ``0..most``."""
        noise = self.rng.standard_normal(tuple(like.shape)).astype(np.float32)
        return torch.from_numpy(noise) * float(self.rng.uniform(0, most))

    def _context_crop(self, labels: torch.Tensor, t: int) -> tuple[int, int]:
        """Video window start ``s`` and audio shift ``d``, ``d`` drawn first (uniform labels), with the
        shifted audio window ``s - d .. s - d + window`` inside the clip, as evaluation's windows are."""
        w = min(self.window, t)
        lo = max(-self.max_shift, w - t, int(labels.max()) - self.max_offset)
        hi = min(self.max_shift, t - w, int(labels.min()) + self.max_offset)
        d = int(self.rng.integers(lo, hi + 1)) if lo <= hi else 0
        return int(self.rng.integers(max(0, d), min(t - w, t - w + d) + 1)), d

    def _context_audio(self, audio: torch.Tensor, a: int, t: int) -> dict[str, torch.Tensor]:
        """Audio frames ``a - C .. a + window + C`` (``C = audio_context``), zero beyond the clip, and
        ``audio_valid`` marking the frames that lie inside it."""
        c, w, step = self.audio_context, self.window, self.audio_per_frame
        first, stop = max(0, a - c), min(t, a + w + c)
        out = audio.new_zeros(*audio.shape[:-1], step * (w + 2 * c))
        out[..., step * (first - a + c):step * (stop - a + c)] = audio[..., step * first:step * stop]
        valid = torch.zeros(w + 2 * c, dtype=torch.bool)
        valid[first - a + c:stop - a + c] = True
        return {"audio": out, "audio_valid": valid}

    def _audio_shift(self, labels: torch.Tensor, start: int, t: int) -> int:
        """A shift ``d`` keeping the audio window inside the clip and every label within range."""
        if self.max_shift <= 0:
            return 0
        lo = max(-self.max_shift, start + self.window - t, int(labels.max()) - self.max_offset)
        hi = min(self.max_shift, start, int(labels.min()) + self.max_offset)
        return int(self.rng.integers(lo, hi + 1)) if lo <= hi else 0


class ClipDataset(Dataset):
    """In-memory clips, kept as uint8 frames and audio features; items are the model's inputs:
    ``video`` (3,T,S,S) normalised per the spec, ``audio`` (1,13,4T) MFCC or (1,640T) waveform,
    ``labels`` (T,) per-frame
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
        tensors["video"] = item["video"] if "video" in item else frames_to_tensor(item["frames"], self.pre)
        return self.augment(tensors) if self.augment is not None else tensors


def synth_dataset(spec: ModelSpec, split: str, count: int, num_frames: int = 50,
                  kinds: dict[str, float] | None = None, workers: int = 1, indices: list[int] | None = None,
                  **config) -> ClipDataset:
    """Generate ``count`` synthetic clips of ``split`` (or those numbered ``indices``) at the spec's crop size."""
    from syncopt.data.synth import SynthConfig, make_clips

    if reads_lips(spec):
        raise UsageError(f"{spec.name} reads face-mesh lip motion, which the synthetic generator does not make: "
                         "give it real videos (a folder or a manifest .csv)")

    cfg = SynthConfig(crop_size=spec.preprocessing.crop_size, num_frames=num_frames,
                      max_offset=spec.max_offset, **config)
    clips = make_clips(split, count, cfg, kinds=kinds or DEFAULT_KINDS, workers=workers, indices=indices)
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


def reads_lips(spec: ModelSpec) -> bool:
    """Whether the model reads face-mesh lip motion (real video only) rather than face-crop pixels."""
    return spec.preprocessing.video_features == "lips"


EVAL_SHIFTS = (-10, -5, 0, 5, 10)  # audio delays (frames) that turn in-sync real clips into labelled ones


def shifted_items(dataset: ClipDataset, shifts: tuple[int, ...], max_offset: int) -> ClipDataset:
    """Every clip of ``dataset`` once per audio delay ``k`` of ``shifts`` (frames; labels ``offset - k``),
    with ``max(|k|)`` frames cut from both ends so that every copy reads real audio.

    Turns in-sync real clips (one offset each) into an evaluation set with known offsets, as
    :mod:`syncopt.analysis.shift_eval` does for whole videos; copies whose labels leave ``±max_offset`` are left out.
    """
    m = max(abs(k) for k in shifts)
    step = dataset.pre.audio_per_frame
    items = []
    for item in dataset.items:
        n = len(item["labels"]) - 2 * m
        if n <= 0:
            continue
        picture = {"video": item["video"][:, m:m + n]} if "video" in item else {"frames": item["frames"][m:m + n]}
        for k in shifts:
            labels = item["labels"][m:m + n] - k
            if int(labels.abs().max()) > max_offset:
                continue
            items.append(item | picture | {"audio": item["audio"][..., step * (m - k):step * (m - k + n)],
                                 "labels": labels, "valid": item["valid"][m:m + n], "offset": item["offset"] - k,
                                 "shift": k})
    return ClipDataset(items, dataset.pre)


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def read_manifest(source: str | os.PathLike) -> list[tuple[Path, int]]:
    """``(video, offset)`` pairs from a folder (every video, offset 0 = in sync) or a CSV with
    columns ``path`` (relative to the CSV) and optional ``offset`` (frames, SyncNet's sign); lines
    starting with ``#`` are comments."""
    src = Path(source)
    if src.is_dir():
        videos = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise InputFileError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {src}")
        return [(p, 0) for p in videos]
    if not src.is_file():
        raise InputFileError(f"data source not found: {src} (use synth, a folder of videos, or a manifest .csv)")
    with open(src, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.lstrip().startswith("#")))
    if not rows or "path" not in rows[0]:
        raise UsageError(f"manifest {src.name} needs a header with a 'path' column (and optionally 'offset')")
    entries = []
    for line, row in enumerate(rows, start=2):
        try:
            entries.append((src.parent / row["path"], int(row.get("offset") or 0)))
        except ValueError as exc:
            raise UsageError(f"manifest {src.name} line {line}: offset {row.get('offset')!r} is not an integer") from exc
    return entries


def held_out(source: str | os.PathLike) -> tuple[list[int], list[int]]:
    """Train and validation entry numbers of a folder or manifest: every 10th distinct video (in
    order of first listing) is held out with all its entries, so a clip listed several times (to
    weigh more) is never validated on after training on it (with a single video, it serves both)."""
    paths = [path.resolve() for path, _ in read_manifest(source)]
    videos = list(dict.fromkeys(paths))
    held = set(videos[::10]) if len(videos) >= 2 else set()
    val = [i for i, path in enumerate(paths) if path in held]
    return [i for i, path in enumerate(paths) if path not in held], val or list(range(len(paths)))


def media_splits(spec: ModelSpec, source: str | os.PathLike, crop: str, train: list[int], val: list[int]
                 ) -> tuple[ClipDataset, ClipDataset, list[str]]:
    """Training and validation clips from the entries numbered ``train`` and ``val`` (an empty list
    gives an empty set), and the skipped-file lines. When no held-out entry is usable, the
    training clips validate too."""
    empty = ClipDataset([], spec.preprocessing)
    train_set, skipped = media_dataset(spec, source, crop, indices=train) if train else (empty, [])
    try:
        val_set, val_skipped = media_dataset(spec, source, crop, indices=val) if val else (empty, [])
    except InputFileError:
        val_set, val_skipped = train_set, [f"no usable held-out clip among entries {val}; validating on training clips"]
    return train_set, val_set, skipped + val_skipped


def media_dataset(spec: ModelSpec, source: str | os.PathLike, crop: str = "detect",
                  indices: list[int] | None = None) -> tuple[ClipDataset, list[str]]:
    """Real clips from a folder or manifest (or its entries numbered ``indices``: a split, one rank's
    shard): the largest face track of each (or whole frames), labelled with its offset. Returns the
    dataset and one line per skipped file."""
    from syncopt.data.faces import face_crops
    from syncopt.data.media import load_media

    pre = spec.preprocessing
    items, skipped = [], []
    entries = read_manifest(source)
    for path, offset in entries if indices is None else [entries[i] for i in indices]:
        if pre.video_features == "lips":
            try:
                items += _lip_items(path, offset)
            except SyncoptError as exc:
                skipped.append(f"{path.name}: {exc}")
            continue
        try:
            media = load_media(path, fps=pre.fps, sample_rate=pre.sample_rate)
            track, frames = face_crops(media.frames, crop, spec, path.name)[0]
        except SyncoptError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        audio = audio_to_tensor(media.audio, media.num_frames, pre)[
            ..., pre.audio_per_frame * track.start:pre.audio_per_frame * track.end]
        n = len(frames)
        items.append({"frames": frames, "audio": audio, "labels": torch.full((n,), offset, dtype=torch.int64),
                      "valid": torch.ones(n, dtype=torch.bool), "offset": offset, "kind": "constant"})
    if not items:
        raise InputFileError(f"no usable clips in {source}: " + "; ".join(skipped[:3]))
    return ClipDataset(items, pre), skipped


def _lip_items(path: Path, offset: int, segment: int = LIP_SEGMENT) -> list[dict]:
    """A real clip's longest face track as lip motion and normalised MFCC (through the lip cache), cut
    into segments of about ``segment`` frames so that a long video weighs by its length."""
    from syncopt.data.lipcache import load_or_extract
    from syncopt.data.lipfeatures import lip_inputs

    clip = load_or_extract(path)
    video, audio = lip_inputs(clip.lips, clip.mfcc[:, 4 * clip.start:4 * (clip.start + clip.frames)])
    bounds = np.linspace(0, clip.frames, max(1, round(clip.frames / segment)) + 1).round().astype(int)
    return [{"video": video[:, a:b], "audio": audio[..., 4 * a:4 * b],
             "labels": torch.full((b - a,), offset, dtype=torch.int64), "valid": torch.ones(b - a, dtype=torch.bool),
             "offset": offset, "kind": "constant", "sha256": clip.sha256} for a, b in zip(bounds[:-1], bounds[1:])]
