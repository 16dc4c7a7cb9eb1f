"""Real media: decode video and audio with PyAV, put them on the model timeline, compute MFCC.

- Video frames are resampled onto the target ``fps`` timeline: target frame ``k`` is the
  latest decoded frame whose presentation time is at or before ``k / fps`` (robust to
  variable frame rate).
- Audio is mixed to mono and resampled to ``sample_rate`` by PyAV's resampler (FFmpeg's
  swresample), then trimmed or zero-padded to exactly ``T * sample_rate / fps`` samples.
- MFCC reproduce the original SyncNet pipeline (joonson/syncnet_python SyncNetInstance.py):
  python_speech_features defaults on the 16-bit PCM values read by scipy.io.wavfile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syncopt.errors import InputFileError, MediaError, NoAudioError

SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class Media:
    """Decoded media on the model timeline."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    audio: np.ndarray  # (T * sample_rate / fps,) float32 mono in [-1, 1]
    fps: float
    sample_rate: int
    source_fps: float
    source_sample_rate: int
    source_channels: int
    notes: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def load_media(path: str | os.PathLike, fps: float = 25.0, sample_rate: int = 16000, require_audio: bool = True,
               max_frames: int | None = None) -> Media:
    """Decode ``path`` onto a ``fps`` frame timeline with mono ``sample_rate`` audio.

    Raises :class:`InputFileError` (missing/unreadable), :class:`MediaError` (not media, no
    decodable video) or :class:`NoAudioError` (no audio stream, or silent/constant audio).
    A file that stops decoding part-way yields its decodable prefix with a note.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"video not found: {p}")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"video not readable: {p}")
    notes: list[str] = []
    try:
        container = av.open(str(p))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{p.name} is not a readable media file ({_reason(exc)})") from exc
    with container:
        if not container.streams.video:
            raise MediaError(f"{p.name} has no video stream")
        vstream = container.streams.video[0]
        source_fps = float(vstream.average_rate or vstream.guessed_rate or fps)
        times, images, truncated = _decode_video(container, vstream, fps, max_frames)
    if not images:
        raise MediaError(f"{p.name}: no decodable video frames (corrupt or truncated)")
    if truncated:
        notes.append(f"truncated: video decoding stopped at {times[-1]:.2f} s ({truncated})")
    frames = _resample_frames(times, images, fps, max_frames)
    if abs(source_fps - fps) > 0.01:
        notes.append(f"video resampled from {source_fps:.2f} to {fps:g} fps")

    audio, source_rate, channels = _decode_audio(p, sample_rate, require_audio)
    target = int(round(len(frames) * sample_rate / fps))
    diff = len(audio) - target
    if abs(diff) > sample_rate / fps:
        notes.append(f"audio {'trimmed' if diff > 0 else 'padded'} by {abs(diff) / sample_rate * 1000:.0f} ms "
                     f"to match the video")
    audio = audio[:target] if diff > 0 else np.pad(audio, (0, -diff))
    if require_audio and (np.abs(audio).max(initial=0.0) < SILENCE_PEAK or np.ptp(audio) == 0):
        raise NoAudioError(f"{p.name}: the audio track is silent or constant")
    return Media(frames=frames, audio=audio.astype(np.float32), fps=fps, sample_rate=sample_rate,
                 source_fps=source_fps, source_sample_rate=source_rate, source_channels=channels, notes=tuple(notes))


def _decode_video(container, stream, fps: float, max_frames: int | None) -> tuple[list[float], list[np.ndarray], str]:
    import av

    times: list[float] = []
    images: list[np.ndarray] = []
    limit = None if max_frames is None else max_frames / fps
    try:
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else len(times) / fps
            if limit is not None and t >= limit:
                break
            times.append(t)
            images.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, ValueError) as exc:
        return times, images, _reason(exc)
    return times, images, ""


def _resample_frames(times: list[float], images: list[np.ndarray], fps: float, max_frames: int | None) -> np.ndarray:
    """Target frame k = the latest source frame with time <= k / fps (the first before any)."""
    t = np.asarray(times) - times[0]
    order = np.argsort(t, kind="stable")
    t = t[order]
    duration = t[-1] + (np.median(np.diff(t)) if len(t) > 1 else 1.0 / fps)
    count = max(1, int(np.floor(duration * fps + 1e-6)))
    if max_frames is not None:
        count = min(count, max_frames)
    targets = np.arange(count) / fps
    index = np.clip(np.searchsorted(t, targets + 1e-6, side="right") - 1, 0, len(t) - 1)
    return np.stack([images[order[i]] for i in index])


def _decode_audio(path: Path, sample_rate: int, require_audio: bool) -> tuple[np.ndarray, int, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            if require_audio:
                raise NoAudioError(f"{path.name} has no audio stream")
            return np.zeros(0, np.float32), 0, 0
        stream = container.streams.audio[0]
        source_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler follow the samples, not gappy timestamps
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        except (av.error.FFmpegError, ValueError):
            pass  # keep what decoded; the length reconciliation reports the shortfall
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return np.clip(audio, -1.0, 1.0), source_rate, channels


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def mfcc(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """``(13, N)`` MFCC at 100 per second, equal to ``python_speech_features.mfcc`` defaults.

    The original pipeline feeds int16 PCM values (scipy.io.wavfile), so float audio is scaled
    by 32768 first. Frames of 25 ms every 10 ms, zero-padded at the end, pre-emphasis 0.97,
    512-point power spectrum, 26 mel filters, log (zeros floored at machine eps), DCT-II
    (orthonormal), 13 coefficients, lifter 22, c0 replaced by the log frame energy.
    """
    from scipy.fft import dct

    signal = np.asarray(audio, dtype=np.float64) * 32768.0
    signal = np.append(signal[:1], signal[1:] - 0.97 * signal[:-1])
    win, step, nfft = int(round(0.025 * sample_rate)), int(round(0.01 * sample_rate)), 512
    n = 1 if len(signal) <= win else 1 + int(np.ceil((len(signal) - win) / step))
    padded = np.concatenate([signal, np.zeros((n - 1) * step + win - len(signal))])
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::step][:n]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = power.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = power @ _mel_filterbank(sample_rate, nfft).T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :13]
    cep *= 1 + (22 / 2.0) * np.sin(np.pi * np.arange(13) / 22)
    cep[:, 0] = np.log(energy)
    return cep.T.astype(np.float32)


def _mel_filterbank(sample_rate: int, nfft: int, nfilt: int = 26) -> np.ndarray:
    """Triangular mel filters on FFT bins, laid out as python_speech_features.get_filterbanks."""
    def to_mel(hz):
        return 2595 * np.log10(1 + hz / 700.0)

    mel_points = np.linspace(to_mel(0), to_mel(sample_rate / 2), nfilt + 2)
    hz = 700 * (10 ** (mel_points / 2595.0) - 1)
    bins = np.floor((nfft + 1) * hz / sample_rate).astype(int)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        bank[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        bank[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    return bank


def mfcc_for_frames(audio: np.ndarray, num_frames: int, sample_rate: int = 16000, fps: float = 25.0) -> np.ndarray:
    """MFCC ``(13, 4 * num_frames)``: cropped, or edge-padded by repeating the last column."""
    per_frame = 100.0 / fps
    if abs(per_frame - round(per_frame)) > 1e-9:
        raise ValueError(f"{fps} fps does not give a whole number of MFCC steps (100/s) per frame")
    want = int(round(per_frame)) * num_frames
    feats = mfcc(audio, sample_rate)
    if feats.shape[1] >= want:
        return feats[:, :want]
    return np.pad(feats, ((0, 0), (0, want - feats.shape[1])), mode="edge")
