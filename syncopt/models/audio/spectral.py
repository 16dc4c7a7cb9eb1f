"""Short-time spectra as a strided Conv1d with fixed DFT kernels (exports to ONNX as a Conv).

``torch.stft`` has no ONNX lowering in opset 17 for every runtime we target, so the audio
backbones frame, window and transform the waveform in one convolution whose weights are the
windowed cosine and sine bases. The kernels are non-persistent buffers: they never appear in
a state dict, so checkpoints keep the reference libraries' key layouts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window (``torch.hann_window`` default; AudioSet's ``periodic_hann``)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


def dft_kernels(n_fft: int, window: np.ndarray) -> torch.Tensor:
    """``(2 * (n_fft // 2 + 1), 1, len(window))``: windowed real then imaginary DFT bases.

    A window shorter than ``n_fft`` gives the DFT of the frame zero-padded to ``n_fft``.
    """
    bins = np.arange(n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * bins * np.arange(len(window))[None, :] / n_fft
    kernels = np.concatenate([np.cos(phase), -np.sin(phase)]) * window[None, :]
    return torch.tensor(kernels[:, None, :], dtype=torch.float32)


def power_spectrum(waveform: torch.Tensor, kernels: torch.Tensor, hop: int) -> torch.Tensor:
    """``(B, 1, L)`` -> ``(B, n_fft // 2 + 1, frames)`` power ``|X|^2`` of frames every ``hop`` samples."""
    real, imag = F.conv1d(waveform, kernels, stride=hop).chunk(2, dim=1)
    return real * real + imag * imag
