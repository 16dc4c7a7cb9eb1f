"""Simple per-frame signals for checking audio-video alignment without a model.

Used by tests and diagnostics: the audio loudness envelope against a measure of mouth
opening peaks at the clip's offset (offset ``o``: video frame ``t`` matches audio ``t - o``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d


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
