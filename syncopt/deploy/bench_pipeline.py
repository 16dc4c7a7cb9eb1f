"""``syncopt bench --pipeline sync``: the sync path timed stage by stage (decode, detect, landmarks, crop,
MFCC, model, offset decoding) on real videos."""

from __future__ import annotations

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


PIPELINE_NOTE = ("the video streams as in syncopt sync: decoded once, a few frames ahead in its own thread ('decode "
                 "video' is the time the pass waited for frames), faces tracked and cropped in the same pass; the "
                 "other stages run after it")


def bench_pipeline(video: str, model: str | None = None, preset: str | None = None, weights: str | None = None,
                   crop: str = "detect", repeats: int = 3, chunk: int = 500) -> PipelineReport:
    """Time the ``syncopt sync`` path stage by stage: decode, detect, landmarks, crop (or lip features), MFCC,
    model, offset decoding. ``model`` None: sync's default model and its shipped weights."""
    from syncopt.data.faces import face_crops, timed
    from syncopt.data.media import FrameSource, decode_audio, fit_audio
    from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor
    from syncopt.inference.infer import run_dense
    from syncopt.inference.sync import decode_outputs
    from syncopt.models.sources import resolve

    if repeats < 1:
        raise UsageError("repeats must be at least 1")
    net = resolve(model, preset, weights, shipped=True).build()
    spec = net.spec
    pre = spec.preprocessing
    per_repeat: dict[str, list[float]] = {}  # stage -> its seconds in each repeat (summed over tracks)
    lips = pre.video_features == "lips"  # sync's lip path: the video's own frames, face boxes only
    for _ in range(repeats):
        source, stages = FrameSource(video, fps=pre.fps, native=lips, lazy=lips), {}
        if lips:
            _lip_path(net, video, source, stages, chunk)
        else:
            tracks = face_crops(source, crop, spec, Path(video).name, timings=stages)
            with timed(stages, "decode audio"):
                samples = decode_audio(video, sample_rate=pre.sample_rate).samples
            with timed(stages, "MFCC / audio features"):
                audio = audio_to_tensor(fit_audio(samples, source.num_frames, pre.fps, pre.sample_rate),
                                        source.num_frames, pre)
            per = pre.audio_per_frame
            for track, crops in tracks:
                with timed(stages, "crops -> tensor"):
                    clip = frames_to_tensor(crops, pre)[None]
                with timed(stages, "model"):
                    outputs = run_dense(net, clip, audio[None, ..., per * track.start:per * track.end], chunk=chunk)
                with timed(stages, "offset decoding"):
                    decode_outputs(outputs, spec)
        frames = source.num_frames
        for stage, seconds in stages.items():
            per_repeat.setdefault(stage, []).append(seconds)
    crop = "landmarks" if lips else crop
    medians = {s: float(np.median(v)) * 1000 for s, v in per_repeat.items()}
    total = sum(medians.values())
    return PipelineReport(
        video=str(video), model=spec.name, preset=spec.preset, crop=crop, frames=frames,
        duration_s=frames / pre.fps, repeats=repeats,
        stages=[StageTime(stage=s, ms_p50=v, share=v / total) for s, v in medians.items()],
        total_ms=total, realtime_factor=frames / pre.fps / (total / 1000), note=PIPELINE_NOTE,
    )


def _lip_path(net, video: str, source, stages: dict[str, float], chunk: int) -> None:
    """The lip models' sync path (face mesh tracks, lip motion, clip-normalised MFCC), as
    :func:`syncopt.inference.sync.track_inputs` runs it, every stage's seconds added to ``stages``."""
    from syncopt.data.faces import timed
    from syncopt.data.landmarks import track_video
    from syncopt.data.lipfeatures import lip_inputs, lip_shape
    from syncopt.data.media import decode_audio, fit_audio, mfcc_for_frames
    from syncopt.inference.infer import run_dense
    from syncopt.inference.sync import decode_outputs

    spec, pre = net.spec, net.spec.preprocessing

    tracks = track_video(source, min_track=spec.min_frames, timings=stages)
    frames = source.num_frames
    with timed(stages, "decode audio"):
        samples = decode_audio(video, sample_rate=pre.sample_rate).samples
    with timed(stages, "MFCC / audio features"):
        mfcc = mfcc_for_frames(fit_audio(samples, frames, pre.fps, pre.sample_rate), frames, pre.sample_rate, pre.fps)
    per = pre.audio_per_frame
    for track in tracks:
        with timed(stages, "lip features"):
            video_in, audio_in = lip_inputs(lip_shape(track.points), mfcc[:, per * track.start:per * track.end])
        with timed(stages, "model"):
            outputs = run_dense(net, video_in[None], audio_in[None], chunk=chunk)
        with timed(stages, "offset decoding"):
            decode_outputs(outputs, spec)
