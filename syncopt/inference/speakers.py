"""Active speaker detection: with several face tracks, who speaks at each frame, as turns.

SyncNet's second use (Chung & Zisserman, "Out of time", ACCV 2016 workshops, sec. 5): the face
whose mouth agrees with the audio is the one speaking. Here a track's per-frame score is its
per-frame confidence at the track's own clip offset (the frame's log-probability there minus its
median over offsets, median-filtered; :func:`syncopt.models.decode.decode_dense`). At each frame the
best-scoring track speaks if its score exceeds ``threshold``; turns shorter than ``min_frames``
are merged into their longer neighbour, shortest first.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

THRESHOLD = 0.5  # log-probability margin (nats); chosen on the synthetic validation split
MIN_FRAMES = 5  # 0.2 s at 25 fps


class SpeakerTurn(BaseModel):
    track: int
    start_frame: int
    end_frame: int = Field(description="first frame after the turn")
    start_s: float
    end_s: float


class SpeakerTimeline(BaseModel):
    """Who speaks when: per frame (a track index, or None) and as turns."""

    per_frame: list[int | None]
    turns: list[SpeakerTurn]
    threshold: float


def frame_scores(tracks: list, num_frames: int) -> np.ndarray:
    """``(tracks, T)`` per-frame speaking scores of :class:`~syncopt.inference.sync.TrackSync` results on the
    video's frame axis; ``-inf`` where a track is absent."""
    scores = np.full((len(tracks), num_frames), -np.inf)
    for i, track in enumerate(tracks):
        conf = np.asarray(track.result.per_frame_confidence, dtype=float)
        scores[i, track.start_frame:track.start_frame + len(conf)] = conf[:max(0, num_frames - track.start_frame)]
    return scores


def active_speaker(scores: np.ndarray, fps: float, threshold: float = THRESHOLD,
                   min_frames: int = MIN_FRAMES) -> SpeakerTimeline:
    """Per-frame speaker and turns from ``(tracks, T)`` scores."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be (tracks, T), got shape {scores.shape}")
    t_len = scores.shape[1]
    if scores.shape[0] == 0:
        labels = np.full(t_len, -1)
    else:
        best = scores.argmax(0)
        labels = np.where(scores[best, np.arange(t_len)] > threshold, best, -1)
    labels = _merge_short(labels, min_frames)
    turns = [SpeakerTurn(track=int(label), start_frame=s, end_frame=e, start_s=s / fps, end_s=e / fps)
             for label, s, e in _runs(labels) if label >= 0]
    return SpeakerTimeline(per_frame=[int(x) if x >= 0 else None for x in labels], turns=turns, threshold=threshold)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``(label, start, end)`` of each run of equal labels."""
    if not len(labels):
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(labels)]])
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def _merge_short(labels: np.ndarray, min_frames: int) -> np.ndarray:
    """Shortest run first, runs shorter than ``min_frames`` take the label of their longer neighbour."""
    out = labels.copy()
    while True:
        runs = _runs(out)
        short = [(e - s, i) for i, (_, s, e) in enumerate(runs) if e - s < min_frames]
        if not short or len(runs) == 1:
            return out
        i = min(short)[1]
        j = max((j for j in (i - 1, i + 1) if 0 <= j < len(runs)), key=lambda j: runs[j][2] - runs[j][1])
        out[runs[i][1]:runs[i][2]] = runs[j][0]


def frame_accuracy(predicted: list[int | None], truth: np.ndarray) -> float:
    """Fraction of frames whose speaker (or nobody, -1 in ``truth``) is right."""
    pred = np.array([-1 if p is None else p for p in predicted])
    return float((pred == truth).mean())


def turn_iou(predicted: list[int | None], truth: np.ndarray) -> float:
    """Temporal IoU of each speaker's frames, averaged over speakers present in either."""
    pred = np.array([-1 if p is None else p for p in predicted])
    ious = []
    for speaker in sorted(set(pred[pred >= 0]) | set(truth[truth >= 0])):
        a, b = pred == speaker, truth == speaker
        ious.append((a & b).sum() / (a | b).sum())
    return float(np.mean(ious)) if ious else 1.0


def conversation(seed: int, num_frames: int = 150, turns: int = 3, crop_size: int = 48
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic two-person conversation: ``faces (2, T, S, S, 3)``, ``audio``, per-frame speaker.

    Each face is a synthetic talking head (in sync, offset 0) that moves its lips all the time;
    the audio alternates between the two voices in ``turns`` turns of random length, so at any
    moment one face is heard and the other mouths silently.
    """
    from syncopt.data.synth import HOP, SynthConfig, make_clip

    rng = np.random.default_rng(seed)
    config = SynthConfig(crop_size=crop_size, num_frames=num_frames)
    clips = [make_clip(int(rng.integers(1 << 31)), config, offset=0) for _ in range(2)]
    cuts = np.sort(rng.choice(np.arange(num_frames // (2 * turns), num_frames - num_frames // (2 * turns)),
                              turns - 1, replace=False))
    truth = np.zeros(num_frames, np.int64)
    first = int(rng.integers(2))
    for i, (s, e) in enumerate(zip([0, *cuts], [*cuts, num_frames])):
        truth[s:e] = (first + i) % 2
    audio = np.where(np.repeat(truth, HOP) == 0, clips[0].audio, clips[1].audio).astype(np.float32)
    return np.stack([c.frames for c in clips]), audio, truth
