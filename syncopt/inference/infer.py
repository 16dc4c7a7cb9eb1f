"""Chunked dense inference: any clip length with bounded model memory, same result as one pass.

A clip is cut into chunks of ``chunk`` output frames, each run with ``spec.context_frames``
(at least the frames an output is short of its input, e.g. 4 for 5-frame windows) of extra
context on both sides; only each chunk's centre is kept, so the stitched result equals a
single pass over the whole clip.
"""

from __future__ import annotations

import torch
from torch import nn

from syncopt.core.errors import UsageError
from syncopt.core.spec import parse_dim


@torch.no_grad()
def run_dense(model: nn.Module, video: torch.Tensor, audio: torch.Tensor, chunk: int = 500) -> dict[str, torch.Tensor]:
    """``model(video=..., audio=...)`` over ``(1, 3, T, H, W)`` and the spec's audio input in chunks."""
    if chunk < 1:
        raise UsageError(f"chunk must be at least 1 frame, got {chunk}")
    spec = model.spec
    frames = video.shape[2]
    spec.check_length(frames)
    shortfall = {t.name: -parse_dim(t.shape[-1])[2] for t in spec.outputs}  # "T-4" -> 4
    margin = max(spec.context_frames, *shortfall.values())
    per_frame = spec.preprocessing.audio_per_frame
    if spec.max_frames is not None:
        chunk = min(chunk, spec.max_frames - 2 * margin)
    if frames <= chunk + 2 * margin:
        return model(video=video, audio=audio)
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in spec.output_names}
    for start in range(0, frames, chunk):
        lo, hi = max(0, start - margin), min(frames, start + chunk + margin)
        out = model(video=video[:, :, lo:hi], audio=audio[..., per_frame * lo:per_frame * hi])
        for name, value in out.items():
            keep = min(chunk, frames - shortfall[name] - start)
            if keep > 0:
                pieces[name].append(value[..., start - lo:start - lo + keep])
    return {name: torch.cat(parts, dim=-1) for name, parts in pieces.items()}
