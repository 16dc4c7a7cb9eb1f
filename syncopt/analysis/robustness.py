"""``syncopt robustness``: offset accuracy of models and artifacts under corrupted inputs.

Corruptions act on synthetic test clips (face crops ``(T, S, S, 3)`` uint8 and 16 kHz audio),
each at increasing severity:

- ``noise``: white Gaussian noise added to the audio at an SNR (dB) relative to its RMS;
- ``codec``: the crops re-encoded by PyAV (MPEG-4 Part 2) at a low video bitrate (bits/s);
- ``resolution``: crops downscaled by a factor and scaled back up (area, then bilinear);
- ``blur``: Gaussian blur of the crops (sigma in pixels);
- ``occlusion``: a grey bar over this fraction of the mouth region's width;
- ``frame_drop``: each frame dropped with this probability and the previous one repeated;
- ``fps``: video captured at a lower frame rate, held to 25 fps (nearest earlier frame).

Accuracy is the clip offset (decided from all frames) within ±1 frame of the label, and the
per-frame offset accuracy on usable frames.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from syncopt.core.errors import UsageError

Clip = tuple[np.ndarray, np.ndarray]  # frames (T, S, S, 3) uint8, audio float32
SEVERITIES: dict[str, tuple[float, ...]] = {
    "noise": (20.0, 10.0, 5.0, 0.0, -5.0, -10.0),
    "codec": (32000.0, 8000.0, 2000.0),
    "resolution": (2.0, 4.0, 8.0),
    "blur": (1.0, 2.0, 4.0),
    "occlusion": (0.25, 0.5, 1.0),
    "frame_drop": (0.1, 0.3, 0.5),
    "fps": (15.0, 10.0, 5.0),
}
UNITS = {"noise": "SNR dB", "codec": "bit/s", "resolution": "downscale x", "blur": "sigma px",
         "occlusion": "mouth fraction", "frame_drop": "drop prob", "fps": "source fps"}


def corrupt(kind: str, severity: float, frames: np.ndarray, audio: np.ndarray, seed: int = 0) -> Clip:
    """``(frames, audio)`` with corruption ``kind`` applied at ``severity``."""
    if kind not in _CORRUPTIONS:
        raise UsageError(f"unknown corruption '{kind}' (known: {', '.join(_CORRUPTIONS)})")
    return _CORRUPTIONS[kind](frames, audio, severity, np.random.default_rng(seed))


def _noise(frames, audio, snr_db, rng) -> Clip:
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
    noise = rng.standard_normal(len(audio)) * rms * 10 ** (-snr_db / 20)
    return frames, (audio + noise).astype(np.float32)


def _codec(frames, audio, bitrate, rng) -> Clip:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.bit_rate = "yuv420p", int(bitrate)
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return decoded[:len(frames)], audio


def _resolution(frames, audio, factor, rng) -> Clip:
    import cv2

    s = frames.shape[1]
    small = max(1, int(round(s / factor)))
    return np.stack([cv2.resize(cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA), (s, s),
                                interpolation=cv2.INTER_LINEAR) for f in frames]), audio


def _blur(frames, audio, sigma, rng) -> Clip:
    import cv2

    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]), audio


def _occlusion(frames, audio, fraction, rng) -> Clip:
    """A grey bar over ``fraction`` of the mouth band's width (synthetic mouths sit at 0.6-0.85 S)."""
    s = frames.shape[1]
    out = frames.copy()
    width = int(round(fraction * 0.5 * s))
    x0 = int(round(0.5 * s - width / 2))
    out[:, int(0.6 * s):int(0.86 * s), x0:x0 + width] = 128
    return out, audio


def _frame_drop(frames, audio, prob, rng) -> Clip:
    keep = rng.random(len(frames)) >= prob
    keep[0] = True
    index = np.maximum.accumulate(np.where(keep, np.arange(len(frames)), 0))
    return frames[index], audio


def _fps(frames, audio, source_fps, rng) -> Clip:
    t = np.arange(len(frames)) / 25.0
    captured = np.floor(t * source_fps + 1e-9) / source_fps  # the latest capture at or before t
    index = np.minimum(np.round(captured * 25.0).astype(int), len(frames) - 1)
    return frames[index], audio


_CORRUPTIONS: dict[str, Callable[..., Clip]] = {
    "noise": _noise, "codec": _codec, "resolution": _resolution, "blur": _blur, "occlusion": _occlusion,
    "frame_drop": _frame_drop, "fps": _fps,
}


class Cell(BaseModel):
    model: str
    corruption: str
    severity: float | None  # None: clean
    clip_accuracy_pm1: float
    frame_accuracy: float


class RobustnessReport(BaseModel):
    clips: int
    frames: int
    units: dict[str, str]
    cells: list[Cell]


def predictor(target: str, preset: str = "tiny") -> tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray], object]:
    """``(label, predict(frames, audio) -> offset_logits (2K+1, T), spec)`` for a model name (shipped
    weights), ``NAME=WEIGHTS`` (torch weights of a registered model), a run directory, or an
    exported artifact (its manifest or file; run in its format's runtime)."""
    from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor

    if Path(target).is_file():
        from syncopt.core.artifact import load_artifact
        from syncopt.runtimes import load

        artifact = load_artifact(target)
        session, spec = load(artifact), artifact.spec

        def run_artifact(frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
            pre = spec.preprocessing
            feeds = {"video": frames_to_tensor(frames, pre)[None], "audio": audio_to_tensor(audio, len(frames), pre)[None]}
            return np.asarray(session.run(feeds)["offset_logits"])[0]

        return f"{Path(artifact.file).name}", run_artifact, spec
    from syncopt.inference.infer import run_dense
    from syncopt.models.sources import resolve

    model = resolve(target, preset, shipped=True).build()
    if "offset_logits" not in model.spec.output_names:
        raise UsageError(f"model '{target}' gives no offset logits")
    weights = target.partition("=")[2]
    source = weights or (target if Path(target).is_dir() else "")
    label = f"{model.spec.name} ({Path(source).name})" if source else model.spec.name

    def run_model(frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        pre = model.spec.preprocessing
        out = run_dense(model, frames_to_tensor(frames, pre)[None], audio_to_tensor(audio, len(frames), pre)[None])
        return out["offset_logits"][0].numpy()

    return label, run_model, model.spec


def run_robustness(targets: list[str], clips: int = 20, frames: int = 75, corruptions: list[str] | None = None,
                   preset: str = "tiny", progress: Callable[[str], None] | None = None) -> RobustnessReport:
    """Accuracy of every target on clean and corrupted synthetic test clips (the same clips for all)."""
    from syncopt.data.synth import SynthConfig, make_clip, split_seed

    kinds = corruptions or list(SEVERITIES)
    for kind in kinds:
        if kind not in SEVERITIES:
            raise UsageError(f"unknown corruption '{kind}' (known: {', '.join(SEVERITIES)})")
    predictors = [predictor(target, preset) for target in targets]
    labels = [label for label, _, _ in predictors]
    if len(set(labels)) < len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise UsageError(f"two targets are both labelled '{twice}'; rename one so the table keeps them apart")
    cells = []
    for label, predict, spec in predictors:
        size = spec.preprocessing.crop_size
        data = [make_clip(split_seed("test", 9000 + i), SynthConfig(crop_size=size, num_frames=frames,
                                                                    max_offset=spec.max_offset)) for i in range(clips)]
        conditions = [("clean", None)] + [(k, s) for k in kinds for s in SEVERITIES[k]]
        for kind, severity in conditions:
            hits, frame_hits, counted = 0, 0, 0
            for i, clip in enumerate(data):
                video, audio = (clip.frames, clip.audio) if severity is None else corrupt(kind, severity, clip.frames,
                                                                                         clip.audio, seed=i)
                logits = torch.from_numpy(predict(video, audio))
                logp = torch.log_softmax(logits, 0)
                k = logits.shape[0] // 2
                hits += abs(int(logp.mean(1).argmax()) - k - clip.offset) <= 1
                partner = np.arange(frames) - clip.per_frame_offset
                usable = clip.per_frame_valid & (partner >= 0) & (partner < frames)
                frame_hits += int(((logp.argmax(0).numpy() - k == clip.per_frame_offset) & usable).sum())
                counted += int(usable.sum())
            cells.append(Cell(model=label, corruption=kind, severity=severity, clip_accuracy_pm1=hits / clips,
                              frame_accuracy=frame_hits / max(counted, 1)))
            if progress:
                progress(f"{label} {kind} {severity}: clip acc {hits / clips:.3f}, frame acc {cells[-1].frame_accuracy:.3f}")
    return RobustnessReport(clips=clips, frames=frames, units={k: UNITS[k] for k in kinds}, cells=cells)


def write_report(report: RobustnessReport, path: str | os.PathLike) -> None:
    from syncopt.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(report.model_dump_json(indent=2))
