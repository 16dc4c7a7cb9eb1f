"""Two-tower sync model: video and audio encoders, optional fusion, correlation, predictor.

The FCN models and the transfer-learning models share this skeleton; they differ only in
their encoders (and fusion). Every encoder maps its input to per-frame embeddings
``(B, C, T)`` at the video rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from syncopt.core.errors import UsageError
from syncopt.core.spec import ModelSpec
from syncopt.models.layers import (
    CrossModalAttention,
    SyncPredictor,
    TemporalCorrelation,
)


class TwoTowerSync(nn.Module):
    """``forward(video, audio)`` -> dict with the spec's outputs.

    Outputs: ``video_emb`` and ``audio_emb`` (B, C, T), ``correlation`` and ``offset_logits``
    (B, 2K+1, T) and ``sync_prob`` (B, T).
    """

    def __init__(
        self,
        spec: ModelSpec,
        video_encoder: nn.Module,
        audio_encoder: nn.Module,
        fusion: CrossModalAttention | None = None,
        predictor_hidden: int = 64,
        refine_offsets: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.video_encoder = video_encoder
        self.audio_encoder = audio_encoder
        self.fusion = fusion
        self.correlation = TemporalCorrelation(spec.max_offset)
        self.predictor = SyncPredictor(spec.max_offset, hidden=predictor_hidden, refine_offsets=refine_offsets)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.jit.is_tracing():  # a clip too long for the encoders (Whisper) fails here, in one line
            self.spec.check_one_pass(video.shape[2])
        v = self.video_encoder(video)
        a = self.audio_encoder(audio)
        if self.fusion is not None:
            v, a = self.fusion(v, a)
        return self._outputs(v, a, self.correlation(v, a))

    def forward_context(self, video: torch.Tensor, audio: torch.Tensor, audio_pad: tuple[int, int] = (0, 0),
                        audio_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Video of ``T`` frames with audio of context: the audio embeds to ``T + 2K`` frames (after
        ``audio_pad`` frames of zero embedding before and after it: a window at a clip's end), covering
        video frames ``-K .. T + K``, so every offset of every frame has a real partner (``train
        --audio-context``). Audio frames where ``audio_valid (B, T + 2K)`` is false embed as zero (training
        batches with clip ends). Training only: ``forward`` is what exports (no shape-dependent branch in it)."""
        if self.fusion is not None:
            raise UsageError(f"{self.spec.name}: audio with context needs a model without cross-modal fusion")
        v = self.video_encoder(video)
        a = F.pad(self.audio_encoder(audio), audio_pad)
        k = self.spec.max_offset
        if a.shape[-1] != v.shape[-1] + 2 * k:
            raise UsageError(f"audio with context embeds to {a.shape[-1]} frames; {v.shape[-1]} video frames "
                             f"need {v.shape[-1] + 2 * k}")
        return self._outputs(v, a, context_correlation(v, a, k, audio_valid))

    def _outputs(self, v: torch.Tensor, a: torch.Tensor, corr: torch.Tensor) -> dict[str, torch.Tensor]:
        offset_logits, sync_logit = self.predictor(corr)
        return {
            "video_emb": v,
            "audio_emb": a,
            "correlation": corr,
            "offset_logits": offset_logits,
            "sync_prob": torch.sigmoid(sync_logit),
        }


def context_correlation(video: torch.Tensor, audio: torch.Tensor, k: int,
                        audio_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of video frame ``t`` (of ``T``) with audio frame ``t - o`` of audio spanning
    ``-K .. T + K``: ``(B, C, T), (B, C, T + 2K) -> (B, 2K+1, T)``; invalid audio frames score 0."""
    v = F.normalize(video, dim=1, eps=1e-6)
    a = F.normalize(audio, dim=1, eps=1e-6)
    if audio_valid is not None:
        a = a * audio_valid[:, None].to(a.dtype)
    length = v.shape[-1]
    return torch.stack([(v * a[..., k - o:k - o + length]).sum(1) for o in range(-k, k + 1)], 1)
