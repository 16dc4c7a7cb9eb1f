"""Two-tower sync model: video and audio encoders, optional fusion, correlation, predictor.

The FCN models and the transfer-learning models share this skeleton; they differ only in
their encoders (and fusion). Every encoder maps its input to per-frame embeddings
``(B, C, T)`` at the video rate.
"""

from __future__ import annotations

import torch
from torch import nn

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
    ) -> None:
        super().__init__()
        self.spec = spec
        self.video_encoder = video_encoder
        self.audio_encoder = audio_encoder
        self.fusion = fusion
        self.correlation = TemporalCorrelation(spec.max_offset)
        self.predictor = SyncPredictor(spec.max_offset, hidden=predictor_hidden)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.jit.is_tracing():  # a clip too long for the encoders (Whisper) fails here, in one line
            self.spec.check_one_pass(video.shape[2])
        v = self.video_encoder(video)
        a = self.audio_encoder(audio)
        if self.fusion is not None:
            v, a = self.fusion(v, a)
        corr = self.correlation(v, a)
        offset_logits, sync_logit = self.predictor(corr)
        return {
            "video_emb": v,
            "audio_emb": a,
            "correlation": corr,
            "offset_logits": offset_logits,
            "sync_prob": torch.sigmoid(sync_logit),
        }
