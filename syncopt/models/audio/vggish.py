"""VGGish (Hershey et al., 2017) with the torchvggish state-dict layout, at 25 Hz.

Keys follow harritaylor/torchvggish: ``features.*`` (the VGG conv stack, indices as its
``make_layers``) and ``embeddings.{0,2,4}.*`` (the three fully connected layers), so the
AudioSet release converted there (``vggish-10086976.pth``) loads strictly. The PCA/quantise
post-processor is not part of the backbone; outputs are the 128-d ReLU embeddings.

Front end, in-model and export-friendly (AudioSet ``vggish_input``/``mel_features``):
16 kHz float audio, 25 ms periodic-Hann frames every 10 ms, 512-point magnitude spectrum
(a strided Conv1d with DFT kernels), 64 HTK-mel bands over 125-7500 Hz, ``log(mel + 0.01)``.

25 Hz choice: VGGish embeds a 0.96 s patch (96 log-mel frames x 64 bands). Output frame ``t``
is VGGish run *unchanged* on the patch centred on that video frame (centre at sample
``640 t + 320``): the waveform is zero-padded by 0.4675 s each side so the log-mel has
``4 T + 92`` frames, ``F.unfold`` cuts ``T`` patches with a hop of 4 frames (40 ms), and all
patches go through the network as one batch. Each output is exactly the embedding a
pretrained VGGish gives that patch (adapting the strides instead would change what the
pretrained convolutions see at the patch borders). Cost: one full VGGish pass per frame
(about 0.87 GMAC at full size), so long clips are best run in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from syncopt.models.audio.spectral import dft_kernels, periodic_hann, power_spectrum

SAMPLE_RATE = 16000
WINDOW, HOP, N_FFT = 400, 160, 512  # 25 ms, 10 ms, next power of two (AudioSet mel_features)
MEL_BANDS, MEL_LOW_HZ, MEL_HIGH_HZ, LOG_OFFSET = 64, 125.0, 7500.0, 0.01
PATCH_FRAMES = 96  # 0.96 s examples
MEL_PER_VIDEO_FRAME = 4  # 40 ms at 25 fps / 10 ms hop
# Zero padding so patch t is centred on video frame t: patch t starts at padded mel frame 4t,
# and its centre (between frames 4t+47 and 4t+48) must sit at sample 640t+320 of the clip.
EDGE_PAD = HOP * (PATCH_FRAMES // 2 - MEL_PER_VIDEO_FRAME // 2) + WINDOW // 2 - HOP // 2  # 7480 samples


@dataclass(frozen=True)
class VGGishConfig:
    """Conv widths (``"M"`` = 2x2 max-pool, as torchvggish's ``make_layers``) and FC widths."""

    layers: tuple[int | str, ...]
    fc: tuple[int, int, int]


PRESETS = {
    "full": VGGishConfig((64, "M", 128, "M", 256, 256, "M", 512, 512, "M"), (4096, 4096, 128)),
    "tiny": VGGishConfig((4, "M", 8, "M", 16, 16, "M", 32, 32, "M"), (64, 64, 32)),
}


def htk_mel_matrix(n_bins: int = N_FFT // 2 + 1) -> np.ndarray:
    """``(MEL_BANDS, n_bins)`` triangular HTK-mel weights as AudioSet's ``spectrogram_to_mel_matrix``.

    Triangles are spaced evenly in ``1127 ln(1 + f / 700)`` between 125 and 7500 Hz; the DC bin
    gets no weight.
    """
    def to_mel(hz: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(hz) / 700.0)

    bin_mel = to_mel(np.linspace(0.0, SAMPLE_RATE / 2, n_bins))
    edges = np.linspace(to_mel(MEL_LOW_HZ), to_mel(MEL_HIGH_HZ), MEL_BANDS + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(0.0, np.minimum((bin_mel - lower) / (centre - lower), (upper - bin_mel) / (upper - centre)))
    weights[:, 0] = 0.0
    return weights


class VGGish(nn.Module):
    """``(B, 1, 640 T)`` waveform at 16 kHz -> ``(B, fc[-1], T)`` per-frame VGGish embeddings."""

    input_kind: Literal["waveform", "mfcc"] = "waveform"

    def __init__(self, cfg: VGGishConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for v in cfg.layers:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        pools = cfg.layers.count("M")
        grid = (PATCH_FRAMES >> pools) * (MEL_BANDS >> pools)  # 6 x 4 after four pools
        h1, h2, out = cfg.fc
        self.embeddings = nn.Sequential(nn.Linear(cin * grid, h1), nn.ReLU(True), nn.Linear(h1, h2), nn.ReLU(True),
                                        nn.Linear(h2, out), nn.ReLU(True))
        self.out_channels = out
        self.register_buffer("dft", dft_kernels(N_FFT, periodic_hann(WINDOW)), persistent=False)
        self.register_buffer("mel", torch.tensor(htk_mel_matrix(), dtype=torch.float32), persistent=False)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, L)`` -> ``(B, 64, (L + 2 * EDGE_PAD - 400) // 160 + 1)`` log-mel, edge padding included."""
        power = power_spectrum(F.pad(audio, (EDGE_PAD, EDGE_PAD)), self.dft, HOP)
        return torch.log(torch.matmul(self.mel, torch.sqrt(power)) + LOG_OFFSET)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch = audio.shape[0]
        mel = self.log_mel(audio)  # (B, 64, 4T + 92)
        patches = F.unfold(mel.unsqueeze(2), (1, PATCH_FRAMES), stride=(1, MEL_PER_VIDEO_FRAME))  # (B, 64*96, T)
        patches = patches.reshape(batch, MEL_BANDS, PATCH_FRAMES, -1).permute(0, 3, 2, 1)  # (B, T, 96, 64)
        x = self.features(patches.reshape(-1, 1, PATCH_FRAMES, MEL_BANDS))
        x = x.permute(0, 2, 3, 1).flatten(1)  # torchvggish flattens (time, band, channel)
        return self.embeddings(x).reshape(batch, -1, self.out_channels).transpose(1, 2)


def build_vggish(preset: str) -> VGGish:
    return VGGish(PRESETS[preset])
