"""Sync-inconsistency detection: stretches of a track whose offset departs from the track's own.

Cut-ins from another take, dubbing that drifts, or a manipulated mouth show up in the dense
per-frame offsets as a region disagreeing with the clip offset. A frame disagrees when its
median-filtered (9 frames, as :mod:`syncopt.training.evaluate`) per-frame offset is more than
``tolerance`` frames from the clip offset; runs of at least ``min_frames`` such frames are the
segments. Frames whose partner audio frame would lie outside the clip are not judged. The
clip's *inconsistency score* is the fraction of judged frames inside segments (0: consistent).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from syncopt.models.decode import SyncResult, median_smooth

TOLERANCE = 1  # frames
MIN_FRAMES = 5  # 0.2 s at 25 fps


class Segment(BaseModel):
    start_frame: int
    end_frame: int = Field(description="first frame after the segment")
    start_s: float
    end_s: float
    offset: int = Field(description="median per-frame offset inside the segment")


class Inconsistency(BaseModel):
    score: float = Field(description="fraction of judged frames in inconsistent segments")
    segments: list[Segment]


def judged_frames(num_frames: int, offset: int) -> np.ndarray:
    """Frames whose partner audio frame ``t - offset`` lies inside the clip."""
    partner = np.arange(num_frames) - offset
    return (partner >= 0) & (partner < num_frames)


def inconsistent_frames(result: SyncResult, tolerance: int = TOLERANCE, min_frames: int = MIN_FRAMES) -> np.ndarray:
    """Boolean per frame: inside a segment whose offset departs from the clip offset."""
    per_frame = np.asarray(result.per_frame_offset, dtype=float)
    judged = judged_frames(len(per_frame), result.offset)
    flagged = (np.abs(median_smooth(per_frame) - result.offset) > tolerance) & judged
    out = np.zeros_like(flagged)
    for s, e in _true_runs(flagged):
        if e - s >= min_frames:
            out[s:e] = True
    return out


def find_inconsistency(result: SyncResult, fps: float, start_frame: int = 0, tolerance: int = TOLERANCE,
                       min_frames: int = MIN_FRAMES) -> Inconsistency:
    """Segments (on the video's frame axis, from ``start_frame``) and the clip's score."""
    flags = inconsistent_frames(result, tolerance, min_frames)
    judged = judged_frames(len(flags), result.offset)
    per_frame = np.asarray(result.per_frame_offset)
    segments = [Segment(start_frame=start_frame + s, end_frame=start_frame + e, start_s=(start_frame + s) / fps,
                        end_s=(start_frame + e) / fps, offset=int(np.median(per_frame[s:e])))
                for s, e in _true_runs(flags)]
    return Inconsistency(score=float(flags.sum() / max(judged.sum(), 1)), segments=segments)


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def temporal_iou(detected: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean frame masks (1.0 when both are empty)."""
    union = (detected | truth).sum()
    return float((detected & truth).sum() / union) if union else 1.0
