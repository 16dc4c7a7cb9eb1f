"""Training losses on dense per-frame outputs.

Labels are per-frame offsets ``(B, T)``; frame ``t`` with offset ``o`` matches audio frame
``t - o``. Frames whose partner lies outside the clip, or marked invalid, are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def usable_frames(labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Valid frames whose audio partner ``t - o`` lies inside the clip."""
    t = torch.arange(labels.shape[1], device=labels.device)[None, :]
    partner = t - labels
    return valid & (partner >= 0) & (partner < labels.shape[1])


def offset_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over offsets ``-K..K`` per frame, ``logits (B, 2K+1, T)``, averaged over ``mask``."""
    k = logits.shape[1] // 2
    target = (labels + k).clamp(0, 2 * k)
    loss = F.cross_entropy(logits, target, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def sync_bce(sync_prob: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the in-sync probability against ``offset == 0``, classes balanced."""
    target = (labels == 0).float()
    pos = (target * mask).sum()
    neg = ((1 - target) * mask).sum()
    weight = torch.where(target > 0, neg / pos.clamp_min(1), torch.ones_like(target)) * mask
    loss = F.binary_cross_entropy(sync_prob.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp_min(1)


def sync_losses(outputs: dict[str, torch.Tensor], labels: torch.Tensor, valid: torch.Tensor,
                temperature: float = 0.07, weights: tuple[float, float, float] = (1.0, 0.5, 0.2),
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The combined objective and its parts.

    - ``offset``: cross-entropy of the predictor's offset logits;
    - ``contrastive``: InfoNCE over temporal negatives — the cosine correlation volume divided by
      ``temperature`` is a softmax over the 2K+1 candidate audio frames for each video frame;
    - ``sync``: balanced BCE of the in-sync probability.

    ``mask`` (B, T) replaces the frames :func:`usable_frames` picks (audio with context: every valid frame
    whose partner audio frame is real, :func:`context_frames`).
    """
    mask = (usable_frames(labels, valid) if mask is None else mask).float()
    parts = {
        "offset": offset_cross_entropy(outputs["offset_logits"], labels, mask),
        "contrastive": offset_cross_entropy(outputs["correlation"] / temperature, labels, mask),
        "sync": sync_bce(outputs["sync_prob"], labels, mask),
    }
    parts["loss"] = sum(w * parts[name] for w, name in zip(weights, ("offset", "contrastive", "sync")))
    return parts


def context_frames(labels: torch.Tensor, valid: torch.Tensor, audio_valid: torch.Tensor) -> torch.Tensor:
    """Valid frames whose audio partner ``t - o`` is real, the audio spanning frames ``-K .. T + K``
    (``audio_valid (B, T + 2K)``)."""
    k = (audio_valid.shape[1] - labels.shape[1]) // 2
    partner = torch.arange(labels.shape[1], device=labels.device)[None, :] - labels + k
    inside = (partner >= 0) & (partner < audio_valid.shape[1])
    return valid & inside & audio_valid.gather(1, partner.clamp(0, audio_valid.shape[1] - 1))
