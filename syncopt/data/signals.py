"""Simple per-frame signals: a running median, and checking audio-video alignment without a model.

Used by tests and diagnostics: the audio loudness envelope against a measure of mouth
opening peaks at the clip's offset (offset ``o``: video frame ``t`` matches audio ``t - o``).
scipy.signal and scipy.ndimage are imported lazily or not at all: they cost ``syncopt sync`` a
second of start-up.
"""

from __future__ import annotations

import numpy as np


def running_median(values: np.ndarray, kernel: int, ends: str = "constant") -> np.ndarray:
    """Median of every ``kernel`` (odd) consecutive rows of ``values`` along axis 0, centred, the
    kernel shrunk to the largest odd row count for shorter ``values``; beyond the ends the rows are
    zero (``ends="constant"``, as ``scipy.signal.medfilt``) or repeat the end row (``"edge"``, as
    ``scipy.ndimage.median_filter``'s ``nearest``)."""
    if kernel % 2 == 0:
        raise ValueError(f"running_median needs an odd kernel, not {kernel}")
    values = np.asarray(values, dtype=np.float64)
    kernel = max(1, min(kernel, len(values) - 1 + len(values) % 2))
    pad = [(kernel // 2, kernel // 2)] + [(0, 0)] * (values.ndim - 1)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, pad, mode=ends), kernel, axis=0)
    return np.median(windows, axis=-1)


def audio_envelope(audio: np.ndarray, num_frames: int, samples_per_frame: int = 640) -> np.ndarray:
    """RMS loudness of each video frame's audio, ``(num_frames,)``."""
    need = num_frames * samples_per_frame
    audio = np.pad(audio[:need], (0, max(0, need - len(audio))))
    return np.sqrt((audio.reshape(num_frames, samples_per_frame).astype(np.float64) ** 2).mean(1))


def lagged_correlation(audio_signal: np.ndarray, video_signal: np.ndarray, max_offset: int = 15,
                       detrend: int = 25) -> np.ndarray:
    """Correlation of ``video[t]`` with ``audio[t - o]`` for ``o = -K..K`` (index ``o + K``).

    Both signals are high-passed (minus a ``detrend``-frame moving average) and standardised.
    """
    from scipy.ndimage import uniform_filter1d  # lazily: not on sync's path (see the module docstring)

    def prepare(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        x = x - uniform_filter1d(x, detrend, mode="nearest") if detrend else x
        return (x - x.mean()) / (x.std() + 1e-12)

    a, v = prepare(audio_signal), prepare(video_signal)
    t_all = len(v)
    scores = []
    for o in range(-max_offset, max_offset + 1):
        t = np.arange(max(0, o), min(t_all, t_all + o))
        scores.append(float(np.mean(v[t] * a[t - o])) if len(t) else 0.0)
    return np.array(scores)


def best_lag(audio_signal: np.ndarray, video_signal: np.ndarray, max_offset: int = 15) -> int:
    """The offset that maximises :func:`lagged_correlation`."""
    return int(np.argmax(lagged_correlation(audio_signal, video_signal, max_offset))) - max_offset
