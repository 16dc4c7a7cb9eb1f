"""``syncopt sync``: a video's audio-video offset per face track, and its per-frame timeline."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from syncopt.core.errors import (
    ClipTooShortError,
    MediaError,
    SyncoptError,
    UsageError,
    WeightsError,
)
from syncopt.inference.calibration import Calibration, apply_calibration
from syncopt.inference.inconsistency import Inconsistency, find_inconsistency
from syncopt.inference.meshes import EarlyMeshes, MeshedVideo, mesh_video
from syncopt.inference.speakers import SpeakerTimeline, active_speaker, frame_scores
from syncopt.models.decode import SyncResult, decode_dense
from syncopt.models.sources import training_summary

if TYPE_CHECKING:
    from syncopt.core.spec import ModelSpec
    from syncopt.data.faces import FaceTrack
    from syncopt.data.media import FrameSource

class TrackSync(BaseModel):
    """One face track's result."""

    track: int
    start_frame: int
    num_frames: int
    box: list[float] | None = Field(None, description="median face box x1,y1,x2,y2 (None for whole-frame crops)")
    offset_frames: int
    offset_ms: float
    confidence: float
    offset_probability: float | None = Field(None, description="expected fraction of frames at the offset "
                                                               "(calibrated when a calibration is applied)")
    uncertain: bool | None = Field(None, description="offset probability below the uncertainty threshold")
    speaking: bool
    result: SyncResult
    frame_boxes: list[list[float]] | None = Field(None, exclude=True, description="per-frame boxes (for rendering)")
    inconsistency: Inconsistency | None = Field(None, description="segments whose offset departs from the track's")


class VideoSync(BaseModel):
    """A video's result: every face track, and which one is speaking."""

    video: str
    model: str
    preset: str
    weights: str
    synthetic_weights: bool
    trained_on: str | None = Field(None, description="what the weights were trained on (their manifest's summary)")
    fps: float
    frames: int
    duration_s: float
    media_notes: list[str]
    tracks: list[TrackSync]
    speaker: int | None
    speakers: SpeakerTimeline | None = Field(None, description="who speaks at each frame, and the turns")
    calibrated: bool = Field(False, description="probabilities are temperature-scaled (syncopt calibrate)")


def track_inputs(path: str | os.PathLike, spec: ModelSpec, crop: str = "detect", early: EarlyMeshes | None = None
                 ) -> tuple[FrameSource, Iterator[tuple[FaceTrack, np.ndarray, torch.Tensor, torch.Tensor]]]:
    """Decode ``path`` and find face tracks (or use whole frames): the frame source and, lazily per
    track, ``(track, crops, video (1,3,T,S,S), audio segment (1,...))``; bad media raise one-line errors.
    A lip model takes ``early``'s face meshes when they were tracked for this video at its rates.

    Frames are streamed (one pass to track faces, one to crop them), so memory grows with the
    face crops, not with the video's resolution.
    """
    from syncopt.data.faces import face_crops
    from syncopt.data.media import FrameSource, decode_audio, fit_audio
    from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor

    pre = spec.preprocessing
    if pre.video_features == "lips":
        if crop != "detect":
            raise UsageError(f"{spec.name} reads face-mesh landmarks: --crop must be 'detect', not '{crop}'")
        meshed = (early.take(path, pre.fps, pre.sample_rate) if early is not None else None) \
            or mesh_video(path, pre.fps, pre.sample_rate)
        return meshed.source, _lip_tracks(meshed, spec)
    source = FrameSource(path, fps=pre.fps)
    track_audio = decode_audio(path, sample_rate=pre.sample_rate)
    with _truncated_is_corrupt(source):
        tracks = face_crops(source, crop, spec, Path(path).name)
    audio = audio_to_tensor(fit_audio(track_audio.samples, source.num_frames, pre.fps, pre.sample_rate, source.notes),
                            source.num_frames, pre)
    per_frame = pre.audio_per_frame
    return source, ((track, crops, frames_to_tensor(crops, pre)[None],
                     audio[None, ..., per_frame * track.start:per_frame * track.end]) for track, crops in tracks)


@contextlib.contextmanager
def _truncated_is_corrupt(source: FrameSource) -> Iterator[None]:
    """A clip too short for the model because its file is truncated is corrupt media (4), not short (6)."""
    try:
        yield
    except ClipTooShortError as exc:
        note = next((n for n in source.notes if n.startswith("truncated: ")), None)
        if note is None:
            raise
        raise MediaError(f"{source.path.name} is corrupt or truncated ({note.removeprefix('truncated: ')}): "
                         f"{exc}") from exc


def _lip_tracks(meshed: MeshedVideo, spec: ModelSpec
                ) -> Iterator[tuple[FaceTrack, None, torch.Tensor, torch.Tensor]]:
    """The tracks of ``spec.min_frames`` or more as ``(track, None, lip motion (1,120,n), normalised
    MFCC (1,1,13,4n))``, longest first."""
    from syncopt.data.lipfeatures import lip_inputs, lip_shape
    from syncopt.data.media import fit_audio, mfcc_for_frames

    pre, source = spec.preprocessing, meshed.source
    tracks = [t for t in meshed.tracks if t.end - t.start >= spec.min_frames]
    with _truncated_is_corrupt(source):
        spec.check_length(source.num_frames)
    if not tracks:
        raise MediaError(f"no face found in {source.path.name}")
    mfcc = mfcc_for_frames(fit_audio(meshed.samples, source.num_frames, pre.fps, pre.sample_rate, source.notes),
                           source.num_frames, pre.sample_rate, pre.fps)
    for track in tracks:
        video, audio = lip_inputs(lip_shape(track.points), mfcc[:, 4 * track.start:4 * track.end])
        yield track, None, video[None], audio[None]


def sync_video(path: str | os.PathLike, model: nn.Module, weights: str = "", synthetic: bool = False,
               crop: str = "detect", chunk: int = 500, calibration: Calibration | None = None,
               early: EarlyMeshes | None = None) -> VideoSync:
    """Decode ``path``, find face tracks (or use whole frames), run the model and decode offsets;
    ``calibration`` temperature-scales the probabilities (:mod:`syncopt.inference.calibration`);
    ``early``: face meshes already being tracked (:mod:`syncopt.inference.meshes`)."""
    from syncopt.inference.infer import run_dense

    spec = model.spec
    if "offset_logits" not in spec.output_names and "video_emb" not in spec.output_names:
        raise UsageError(f"model '{spec.name}' gives neither offset logits nor embeddings")
    pre = spec.preprocessing
    source, tracks = track_inputs(path, spec, crop, early)
    results = []
    for index, (track, _, video, segment) in enumerate(tracks):
        outputs = run_dense(model, video, segment, chunk=chunk)
        if bad := [k for k, v in outputs.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
            raise WeightsError(f"{spec.name} gives NaN or inf {', '.join(bad)} on {Path(path).name} "
                               f"(track {index}): its weights overflow")
        result, offset_probability, uncertain = apply_calibration(outputs, decode_outputs(outputs, spec), calibration,
                                                                  spec.timeline_frames)
        results.append(TrackSync(
            track=index, start_frame=track.start, num_frames=track.end - track.start,
            box=None if crop == "full" else np.median(track.boxes, axis=0).tolist(),
            offset_frames=result.offset, offset_ms=1000.0 * result.offset / pre.fps,
            confidence=result.confidence, offset_probability=offset_probability, uncertain=uncertain,
            speaking=False, result=result,
            frame_boxes=None if crop == "full" else track.boxes.tolist(),
            inconsistency=find_inconsistency(result, pre.fps, track.start),
        ))
    speaker = max(range(len(results)), key=lambda i: results[i].confidence) if results else None
    if speaker is not None:
        results[speaker].speaking = True
    return VideoSync(
        video=str(path), model=spec.name, preset=spec.preset, weights=weights, synthetic_weights=synthetic,
        trained_on=training_summary(weights) if weights else None,
        fps=pre.fps, frames=source.num_frames, duration_s=source.num_frames / pre.fps,
        media_notes=list(source.notes), tracks=results, speaker=speaker,
        speakers=active_speaker(frame_scores(results, source.num_frames), pre.fps) if results else None,
        calibrated=calibration is not None,
    )


def decode_outputs(outputs: dict[str, torch.Tensor], spec: ModelSpec) -> SyncResult:
    """The offset of a dense model's outputs (logits), or of SyncNet's embeddings (windowed distances)."""
    if "offset_logits" in outputs:
        return decode_dense(outputs["offset_logits"][0], outputs["sync_prob"][0], spec.timeline_frames)
    from syncopt.models.syncnet import windowed_offset

    return windowed_offset(outputs["video_emb"][0].T, outputs["audio_emb"][0].T, vshift=spec.max_offset)


@dataclass
class SyncFailure:
    """A video of a batch that could not be synced, and why."""

    video: str
    error: SyncoptError


def sync_videos(videos: list[str], model: nn.Module, weights: str = "", synthetic: bool = False,
                crop: str = "detect", chunk: int = 500, calibration: str | None = None, plot: str | None = None,
                render: str | None = None, keep_going: bool = True, early: EarlyMeshes | None = None
                ) -> Iterator[VideoSync | SyncFailure]:
    """:func:`sync_video` over ``videos``, each result as it is ready, with its plot (``plot``) and
    annotated video (``render``) when asked (named after the video when there are several). With
    ``keep_going`` a video that fails is a :class:`SyncFailure` and the batch goes on; otherwise its
    error is raised. ``calibration`` defaults to the file that applies to the weights by itself
    (:func:`~syncopt.inference.calibration.find_calibration`); ``early``: one video's face meshes
    already being tracked."""
    from syncopt.inference.calibration import find_calibration, load_calibration

    calibration = calibration or find_calibration(weights, synthetic)
    temperatures = load_calibration(calibration, model.spec, weights) if calibration else None

    def named(path: str, video: str) -> str:
        return path if len(videos) == 1 else str(Path(path).with_stem(f"{Path(path).stem}_{Path(video).stem}"))

    for video in videos:
        try:
            res = sync_video(video, model, weights, synthetic, crop=crop, chunk=chunk, calibration=temperatures,
                             early=early)
            if plot:
                from syncopt.core.plots import plot_sync

                plot_sync(res, named(plot, video))
            if render:
                from syncopt.inference.render import render_sync

                render_sync(res, named(render, video))
        except SyncoptError as exc:
            if not keep_going:
                raise
            yield SyncFailure(video, exc)
            continue
        yield res


def score_faces(model, faces: list[np.ndarray], audio: np.ndarray, chunk: int = 500) -> list[TrackSync]:
    """:class:`TrackSync` for whole-clip face crop sequences ``(T, S, S, 3)`` sharing
    one 16 kHz ``audio`` track (synthetic evaluation, no detection)."""
    from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor
    from syncopt.inference.infer import run_dense

    pre = model.spec.preprocessing
    t_len = len(faces[0])
    sound = audio_to_tensor(audio, t_len, pre)[None]
    tracks = []
    for i, crops in enumerate(faces):
        outputs = run_dense(model, frames_to_tensor(crops, pre)[None], sound, chunk=chunk)
        result = decode_outputs(outputs, model.spec)
        tracks.append(TrackSync(track=i, start_frame=0, num_frames=t_len, offset_frames=result.offset,
                                offset_ms=1000.0 * result.offset / pre.fps, confidence=result.confidence,
                                speaking=False, result=result))
    return tracks
