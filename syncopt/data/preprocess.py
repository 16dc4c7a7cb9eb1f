"""Raw media -> model input tensors, as a model's spec prescribes."""

from __future__ import annotations

import numpy as np
import torch

from syncopt.core.spec import Preprocessing


def frames_to_tensor(frames: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 RGB crops -> ``(3, T, S, S)`` float32 normalised per the spec.

    Crops of another size are resized to ``pre.crop_size``; BGR models get their channels
    swapped; values become ``(pixel - mean) / std``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if frames.shape[1:3] != (pre.crop_size, pre.crop_size):
        import cv2

        frames = np.stack([cv2.resize(f, (pre.crop_size, pre.crop_size), interpolation=cv2.INTER_AREA)
                           for f in frames])
    if pre.channel_order == "bgr":
        frames = frames[..., ::-1]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    return x.sub_(pre.pixel_mean).div_(pre.pixel_std)  # in place: one float copy of a long video's crops, not three


def audio_to_tensor(audio: np.ndarray, num_frames: int, pre: Preprocessing) -> torch.Tensor:
    """16 kHz mono audio -> the model's audio input for ``num_frames`` video frames: MFCC
    ``(1, 13, 4T)``, or the waveform ``(1, 640T)`` (cropped, or zero-padded at the end)."""
    if pre.audio_features == "waveform":
        n = pre.audio_per_frame * num_frames
        wave = np.zeros(n, np.float32)
        wave[:min(n, len(audio))] = audio[:n]
        return torch.from_numpy(wave)[None]
    from syncopt.data.media import mfcc_for_frames

    feats = mfcc_for_frames(audio, num_frames, sample_rate=pre.sample_rate, fps=pre.fps)
    return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None]
