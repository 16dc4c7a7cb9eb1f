"""``syncopt bench --pipeline sync``: the sync path timed stage by stage (decode, detect, landmarks, crop,
MFCC, model, offset decoding) on real videos."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from syncopt.core.errors import UsageError


class StageTime(BaseModel):
    stage: str
    ms_p50: float
    share: float  # of the summed stage medians



class PipelineReport(BaseModel):
    video: str
    model: str
    preset: str
    crop: str
    frames: int
    duration_s: float
    repeats: int
    stages: list[StageTime]
    total_ms: float
    realtime_factor: float  # seconds of video processed per second
    note: str



PIPELINE_NOTE = ("the video streams as in syncopt sync: decoded once, faces tracked and cropped in the same pass "
                 "(decode, detect, landmarks and crop timed inside it); the other stages run after it")



def bench_pipeline(video: str, model: str = "fcn", preset: str = "tiny", weights: str | None = None,
                   crop: str = "detect", repeats: int = 3, chunk: int = 500) -> PipelineReport:
    """Time the ``syncopt sync`` path stage by stage: decode, detect, landmarks, crop, MFCC, model, offset decoding."""
    from syncopt.data.faces import face_crops
    from syncopt.data.media import FrameSource, decode_audio, fit_audio
    from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor
    from syncopt.inference.infer import run_dense
    from syncopt.models.decode import decode_dense
    from syncopt.models.sources import resolve
    from syncopt.models.syncnet import windowed_offset

    if repeats < 1:
        raise UsageError("repeats must be at least 1")
    net = resolve(model, preset, weights, shipped=True).build()
    spec = net.spec
    pre = spec.preprocessing
    times: dict[str, list[float]] = {}

    def timed(stage: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        out = fn()
        times.setdefault(stage, []).append(time.perf_counter() - t0)
        return out

    for _ in range(repeats):
        source, stages = FrameSource(video, fps=pre.fps), {}
        tracks = face_crops(source, crop, spec, Path(video).name, timings=stages)
        for stage, seconds in stages.items():
            times.setdefault(stage, []).append(seconds)
        frames = source.num_frames
        track_audio = timed("decode audio", lambda: decode_audio(video, sample_rate=pre.sample_rate))
        audio = timed("MFCC / audio features", lambda: audio_to_tensor(
            fit_audio(track_audio.samples, frames, pre.fps, pre.sample_rate), frames, pre))
        for track, crops in tracks:
            clip = timed("crops -> tensor", lambda: frames_to_tensor(crops, pre)[None])
            per = pre.audio_per_frame
            segment = audio[None, ..., per * track.start:per * track.end]
            outputs = timed("model", lambda: run_dense(net, clip, segment, chunk=chunk))
            timed("offset decoding", lambda: decode_dense(outputs["offset_logits"][0], outputs["sync_prob"][0])
                  if "offset_logits" in outputs else
                  windowed_offset(outputs["video_emb"][0].T, outputs["audio_emb"][0].T, vshift=spec.max_offset))
    # stages inside the per-track loop ran once per track: sum them per repeat before the median
    per_repeat = {s: np.asarray(v).reshape(repeats, -1).sum(1) for s, v in times.items()}
    medians = {s: float(np.median(v)) * 1000 for s, v in per_repeat.items()}
    total = sum(medians.values())
    return PipelineReport(
        video=str(video), model=spec.name, preset=spec.preset, crop=crop, frames=frames,
        duration_s=frames / pre.fps, repeats=repeats,
        stages=[StageTime(stage=s, ms_p50=v, share=v / total) for s, v in medians.items()],
        total_ms=total, realtime_factor=frames / pre.fps / (total / 1000), note=PIPELINE_NOTE,
    )



