"""The original SyncNet ("Out of time: automated lip sync in the wild", Chung & Zisserman, 2016).

Layer layout, shapes and ``state_dict`` keys follow the public demo model ``syncnet_v2``
(joonson/syncnet_python, SyncNetModel.py) so that its ``syncnet_v2.model`` loads strictly:
``netcnnaud`` (Conv2d stack on a 1x13x20 MFCC window -> 512), ``netcnnlip`` (Conv3d stack on a
3x5x224x224 BGR 0-255 window -> 512), ``netfcaud``/``netfclip`` (512 -> 512 -> 1024, BatchNorm1d).
The evaluation procedure reproduces SyncNetInstance.evaluate of the same repository.

Dense forward: the lip tower's only temporal kernel is the first (5 frames, no padding), so
running it on a whole clip gives one embedding per 5-frame window exactly as the windowed loop
does; audio windows (20 MFCC steps, stride 4) are gathered and batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from syncopt.core.spec import ModelSpec, Preprocessing, TensorSpec
from syncopt.models.decode import SyncResult, median_smooth
from syncopt.models.registry import register_model

WINDOW_FRAMES = 5
MFCC_WINDOW = 20
MFCC_PER_FRAME = 4


@dataclass(frozen=True)
class SyncNetConfig:
    """Widths of the published model, scaled uniformly by the tiny preset."""

    aud_channels: tuple[int, int, int, int, int, int] = (64, 192, 384, 256, 256, 512)
    lip_channels: tuple[int, int, int, int, int, int] = (96, 256, 256, 256, 256, 512)
    fc_hidden: int = 512
    embed_dim: int = 1024


PRESETS = {
    "full": SyncNetConfig(),
    "tiny": SyncNetConfig((8, 24, 48, 32, 32, 64), (12, 32, 32, 32, 32, 64), 64, 128),
}


def _audio_tower(c: tuple[int, ...]) -> nn.Sequential:
    # Indices must match the published Sequential (ReLU/MaxPool slots included) for the keys.
    return nn.Sequential(
        nn.Conv2d(1, c[0], (3, 3), padding=(1, 1)), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True),
        nn.MaxPool2d((1, 1), stride=(1, 1)),
        nn.Conv2d(c[0], c[1], (3, 3), padding=(1, 1)), nn.BatchNorm2d(c[1]), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), stride=(1, 2)),
        nn.Conv2d(c[1], c[2], (3, 3), padding=(1, 1)), nn.BatchNorm2d(c[2]), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], (3, 3), padding=(1, 1)), nn.BatchNorm2d(c[3]), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], (3, 3), padding=(1, 1)), nn.BatchNorm2d(c[4]), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), stride=(2, 2)),
        nn.Conv2d(c[4], c[5], (5, 4)), nn.BatchNorm2d(c[5]), nn.ReLU(),
    )


def _lip_tower(c: tuple[int, ...]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, c[0], (5, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d(c[0]), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(c[0], c[1], (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(c[1]),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(c[1], c[2], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c[2]), nn.ReLU(inplace=True),
        nn.Conv3d(c[2], c[3], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c[3]), nn.ReLU(inplace=True),
        nn.Conv3d(c[3], c[4], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c[4]), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(c[4], c[5], (1, 6, 6)), nn.BatchNorm3d(c[5]), nn.ReLU(inplace=True),
    )


def _fc_head(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))


def syncnet_spec(preset: str, cfg: SyncNetConfig) -> ModelSpec:
    emb = cfg.embed_dim
    return ModelSpec(
        name="syncnet_v2",
        preset=preset,
        inputs=(
            TensorSpec(name="video", shape=("B", 3, "T", 224, 224), layout="NCTHW", value_range=(0.0, 255.0),
                       description="face crops, BGR, 0..255, 25 fps"),
            TensorSpec(name="audio", shape=("B", 1, 13, "4*T"), layout="NCFT",
                       description="MFCC (python_speech_features defaults on int16-scaled 16 kHz audio), 4 per frame"),
        ),
        outputs=(
            TensorSpec(name="video_emb", shape=("B", emb, "T-4"), layout="NCT",
                       description="one embedding per 5-frame window"),
            TensorSpec(name="audio_emb", shape=("B", emb, "T-4"), layout="NCT",
                       description="one embedding per 20-step MFCC window"),
        ),
        preprocessing=Preprocessing(crop_size=224, channel_order="bgr"),
        min_frames=WINDOW_FRAMES,
        max_offset=15,
    )


class SyncNetV2(nn.Module):
    """The published two-stream SyncNet with a dense ``forward(video, audio)``."""

    def __init__(self, cfg: SyncNetConfig, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.netcnnaud = _audio_tower(cfg.aud_channels)
        self.netfcaud = _fc_head(cfg.aud_channels[-1], cfg.fc_hidden, cfg.embed_dim)
        self.netfclip = _fc_head(cfg.lip_channels[-1], cfg.fc_hidden, cfg.embed_dim)
        self.netcnnlip = _lip_tower(cfg.lip_channels)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC windows ``(N, 1, 13, 20)`` -> embeddings ``(N, D)``."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """Frame windows ``(N, 3, 5, 224, 224)`` -> embeddings ``(N, D)``."""
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        b = video.shape[0]
        lip = self.netcnnlip(video).flatten(2)  # (B, 512, N) with N = T - 4 windows
        n = lip.shape[2]
        lip = self.netfclip(lip.transpose(1, 2).reshape(b * n, -1)).reshape(b, n, -1)
        starts = torch.arange(n, device=audio.device) * MFCC_PER_FRAME
        index = starts[:, None] + torch.arange(MFCC_WINDOW, device=audio.device)[None, :]  # (N, 20)
        windows = audio[:, :, :, index]  # (B, 1, 13, N, 20)
        windows = windows.permute(0, 3, 1, 2, 4).reshape(b * n, 1, audio.shape[2], MFCC_WINDOW)
        aud = self.forward_aud(windows).reshape(b, n, -1)
        return {"video_emb": lip.transpose(1, 2), "audio_emb": aud.transpose(1, 2)}


@register_model("syncnet_v2", "original SyncNet (Chung & Zisserman 2016), published syncnet_v2 layout")
def build_syncnet_v2(preset: str) -> SyncNetV2:
    cfg = PRESETS[preset]
    return SyncNetV2(cfg, syncnet_spec(preset, cfg))


@torch.no_grad()
def windowed_embeddings(
    model: SyncNetV2, video: torch.Tensor, mfcc: torch.Tensor, batch_size: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """The published loop: every 5-frame window and its 20-step MFCC window, ``batch_size`` at a time.

    ``video`` is ``(1, 3, T, 224, 224)``, ``mfcc`` ``(1, 1, 13, M)``. As in SyncNetInstance.evaluate,
    the clip length is ``min(T, M // 4)`` and windows start at ``0 .. length - 6`` (the
    published loop stops one window short of the last possible one; kept for fidelity).
    """
    length = min(video.shape[2], mfcc.shape[3] // MFCC_PER_FRAME)
    last = length - WINDOW_FRAMES
    if last < 1:
        raise ValueError(f"clip of {length} frames is too short for 5-frame windows")
    video_feats, audio_feats = [], []
    for start in range(0, last, batch_size):
        frames = range(start, min(last, start + batch_size))
        lip_in = torch.cat([video[:, :, f:f + WINDOW_FRAMES] for f in frames], 0)
        aud_in = torch.cat([mfcc[:, :, :, f * MFCC_PER_FRAME:f * MFCC_PER_FRAME + MFCC_WINDOW] for f in frames], 0)
        video_feats.append(model.forward_lip(lip_in))
        audio_feats.append(model.forward_aud(aud_in))
    return torch.cat(video_feats), torch.cat(audio_feats)


def pairwise_distances(video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int) -> torch.Tensor:
    """``d[i, j] = ||v_i - a_{i+j-vshift}||`` (audio zero-padded), shape ``(N, 2*vshift+1)``.

    The published calc_pdist, vectorised; ``F.pairwise_distance`` adds its eps of 1e-6 as there.
    """
    n = video_emb.shape[0]
    padded = torch.nn.functional.pad(audio_emb, (0, 0, vshift, vshift))
    index = torch.arange(n)[:, None] + torch.arange(2 * vshift + 1)[None, :]
    partners = padded[index]  # (N, 2v+1, D)
    return torch.nn.functional.pairwise_distance(video_emb[:, None, :].expand_as(partners), partners)


def windowed_offset(video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = 15) -> SyncResult:
    """Offset, min distance and confidence as SyncNetInstance.evaluate computes them.

    offset = vshift - argmin(mean distance); confidence = median - min of the mean distances;
    per-frame confidence = median(mean distance) - distance at the chosen shift, median-filtered
    with kernel 9 (scipy.signal.medfilt, as published; shrunk for clips under 9 windows).
    """
    dists = pairwise_distances(video_emb, audio_emb, vshift)
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    median = torch.median(mdist)
    fconf = (median - dists[:, minidx]).numpy()
    fconfm = median_smooth(fconf)
    best_per_frame = dists.argmin(1)
    return SyncResult(
        offset=int(vshift - minidx),
        confidence=float(median - minval),
        min_dist=float(minval),
        max_offset=vshift,
        offset_scores=mdist.flip(0).tolist(),  # index j is offset vshift - j: flip to run -K..K
        per_frame_offset=[int(vshift - j) for j in best_per_frame],
        per_frame_confidence=np.asarray(fconfm, dtype=float).tolist(),
    )
