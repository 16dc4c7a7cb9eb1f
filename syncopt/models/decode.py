"""From a model's dense outputs to what users read: offset, confidence, per-frame timeline.

Offsets follow the original SyncNet: offset ``o`` means video frame ``t`` matches audio frame
``t - o`` (positive: the audio leads the video).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, Field

from syncopt.data.signals import running_median

MEDIAN_KERNEL = 9  # per-frame confidence smoothing, as in SyncNetInstance.evaluate


class SyncResult(BaseModel):
    """A clip's audio-video offset and its per-frame timeline."""

    offset: int = Field(description="clip offset in frames; positive means the audio leads")
    confidence: float = Field(description="how much the chosen offset stands out from the median one")
    max_offset: int = Field(description="offsets -max_offset..max_offset were considered")
    min_dist: float | None = Field(None, description="mean embedding distance at the offset (SyncNet only)")
    offset_scores: list[float] = Field(description="clip score per offset -K..K: mean log-probability, or "
                                                   "mean distance for SyncNet (lower is better there)")
    per_frame_offset: list[int]
    per_frame_confidence: list[float]
    per_frame_sync_prob: list[float] | None = Field(None, description="in-sync probability per frame")


def median_smooth(values: np.ndarray, kernel: int = MEDIAN_KERNEL) -> np.ndarray:
    """``scipy.signal.medfilt`` (zeros beyond the ends) with the kernel shrunk (kept odd) for clips
    shorter than it."""
    return running_median(values, kernel)


def pooled_log_probs(offset_logits: torch.Tensor, frames: int = 1, temperature: float = 1.0) -> torch.Tensor:
    """``(2K+1, T)`` per-frame offset log-probabilities of ``offset_logits / temperature``, summed over a
    centred window of ``frames`` frames (shorter at the clip's ends); ``frames=1``: each frame alone."""
    logp = torch.log_softmax(offset_logits.detach().double() / temperature, dim=0)
    if frames <= 1:
        return logp
    cum = torch.nn.functional.pad(logp.cumsum(1), (1, 0))
    t = torch.arange(logp.shape[1])
    lo, hi = (t - frames // 2).clamp(min=0), (t - frames // 2 + frames).clamp(max=logp.shape[1])
    return cum[:, hi] - cum[:, lo]


def decode_dense(offset_logits: torch.Tensor, sync_prob: torch.Tensor | None = None,
                 timeline_frames: int = 1) -> SyncResult:
    """Decode one clip's ``offset_logits (2K+1, T)`` (and optional ``sync_prob (T,)``).

    The clip offset maximises the mean per-frame log-probability; confidence is that mean minus
    its median over offsets (the analogue of SyncNet's median - min distance). Per-frame
    confidence is the frame's log-probability at the clip offset minus the frame's median,
    median-filtered with kernel 9. A frame's offset is the best of its own log-probabilities,
    pooled over ``timeline_frames`` frames around it (the model's ``spec.timeline_frames``).
    """
    if offset_logits.dim() != 2 or offset_logits.shape[0] % 2 != 1:
        raise ValueError(f"offset_logits must be (2K+1, T), got {tuple(offset_logits.shape)}")
    k = offset_logits.shape[0] // 2
    logp = torch.log_softmax(offset_logits.detach().float(), dim=0)
    clip_score = logp.mean(1)
    best = int(clip_score.argmax())
    frame_conf = (logp[best] - logp.median(0).values).numpy()
    smoothed = median_smooth(frame_conf)
    return SyncResult(
        offset=best - k,
        confidence=float(clip_score[best] - clip_score.median()),
        max_offset=k,
        offset_scores=clip_score.tolist(),
        per_frame_offset=(pooled_log_probs(offset_logits, timeline_frames).argmax(0) - k).tolist(),
        per_frame_confidence=np.asarray(smoothed, dtype=float).tolist(),
        per_frame_sync_prob=None if sync_prob is None else sync_prob.detach().float().tolist(),
    )
