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

import errno
import functools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from syncopt.core.errors import InputFileError, MediaError, NoAudioError
from syncopt.core.spec import MFCC

if TYPE_CHECKING:
    import av

SILENCE_PEAK = 1e-4
_Item = TypeVar("_Item")


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
    """Decode ``path`` onto a ``fps`` frame timeline with mono ``sample_rate`` audio, all in memory
    (for long videos iterate a :class:`FrameSource` instead).

    Raises :class:`InputFileError` (missing/unreadable), :class:`MediaError` (not media, no
    decodable video) or :class:`NoAudioError` (no audio stream, or silent/constant audio).
    A file that stops decoding part-way yields its decodable prefix with a note.
    """
    source = FrameSource(path, fps, max_frames)
    track = decode_audio(path, sample_rate, require_audio)
    frames = np.stack(list(source))
    audio = fit_audio(track.samples, len(frames), fps, sample_rate, source.notes)
    return Media(frames=frames, audio=audio, fps=fps, sample_rate=sample_rate, source_fps=source.source_fps,
                 source_sample_rate=track.source_rate, source_channels=track.source_channels,
                 notes=tuple(source.notes))


_NOT_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_media_path(p: Path) -> None:
    """Raise :class:`InputFileError` naming why ``p`` is not a readable regular file (missing, a
    dangling symlink or a symlink loop, a directory, FIFO or device, no permission)."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(f"video not found: {p}" + (" (a symlink to a missing file)" if p.is_symlink() else "")
                             ) from None
    except OSError as exc:
        reason = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
        raise InputFileError(f"cannot open video {p}: {reason}") from None
    kind = next((name for test, name in _NOT_FILES if test(mode)), None)
    if kind is not None:
        raise InputFileError(f"{p} is {kind}, not a video file")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"video not readable: {p} (permission denied)")


def _open(p: Path):
    """An open PyAV container with a video stream; one-line errors for missing or non-media files."""
    import av

    check_media_path(p)
    try:
        container = av.open(str(p), metadata_errors="replace")  # damaged tags must not stop decoding (fuzzing)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{p.name} is not a readable media file ({_reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"{p.name} has no video stream")
    return container


class FrameSource:
    """A video's ``(H, W, 3)`` uint8 RGB frames on the ``fps`` timeline, decoded one at a time.

    Iterable any number of times (each pass decodes again), so long videos are processed in
    bounded memory. Target frame ``k`` is the latest source frame whose time is at or before
    ``k / fps`` (the first frame before any; robust to variable frame rate); the clip lasts until
    the last source frame's time plus the median source frame interval. After a full pass,
    ``num_frames`` and ``notes`` (truncation, resampling) are set.

    With ``native=True`` every decoded frame is yielded once, on the source's own timeline, and ``times``
    (seconds from the first frame) is set after a full pass; ``num_frames`` still counts the ``fps``
    timeline, so per-frame signals can be interpolated onto it (:func:`syncopt.data.landmarks.on_timeline`).

    With ``lazy=True`` the frames are :class:`LazyFrame` objects, converted to RGB only where asked: face
    tracking reads a face-sized box of most frames (at 1080p on two shared cores about 0.2-0.3 ms a frame
    against 4 ms for the whole frame).

    A background thread decodes up to ``prefetch`` frames ahead (FFmpeg releases the GIL), so
    decoding overlaps whatever the caller does with each frame (face detection, the face mesh).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, max_frames: int | None = None,
                 prefetch: int = 8, native: bool = False, lazy: bool = False) -> None:
        _fixed_mmap_threshold()
        self.path, self.fps, self.max_frames, self.prefetch = Path(path), fps, max_frames, prefetch
        self.native, self.lazy = native, lazy
        self.times: np.ndarray | None = None
        with _open(self.path) as container:  # fail early, with one line, on a missing or non-media file
            stream = container.streams.video[0]
            self.source_fps = float(stream.average_rate or stream.guessed_rate or fps)
        self.num_frames: int | None = None
        self.notes: list[str] = []

    def __iter__(self) -> Iterator[np.ndarray | LazyFrame]:
        return _prefetched(self._decode, self.prefetch) if self.prefetch > 0 else self._decode()

    def _decode(self) -> Iterator[np.ndarray | LazyFrame]:
        import av

        limit = np.inf if self.max_frames is None else self.max_frames
        times: list[float] = []
        emitted, previous, truncated, capped = 0, None, "", False
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame and slice threads: 1080p HEVC decodes about 1.3x faster on 2 cores
            try:
                for frame in container.decode(stream):
                    t = float(frame.time) if frame.time is not None else len(times) / self.fps
                    t = max(t - times[0], times[-1]) if times else 0.0  # relative, never going back
                    while not self.native and previous is not None and emitted < limit and emitted / self.fps < t - 1e-6:
                        yield previous
                        emitted += 1
                    if (t * self.fps if self.native else emitted) >= limit - 1e-6:
                        capped = True
                        break
                    image = LazyFrame(frame) if self.lazy else upright(frame)
                    if previous is not None and image.shape != previous.shape:
                        # a damaged header mid-stream: keep the frames decoded so far (found by fuzzing)
                        truncated = (f"frame size changed from {previous.shape[1]}x{previous.shape[0]} to "
                                     f"{image.shape[1]}x{image.shape[0]}")
                        break
                    times.append(t)
                    previous = image
                    if self.native:
                        yield image
            except (av.error.FFmpegError, ValueError) as exc:
                truncated = _reason(exc)
            declared = int(stream.frames or 0)  # the container header's frame count (0: unknown)
        if not truncated and not capped and len(times) < 0.98 * declared - 1:  # ended early, no decode error
            truncated = f"{len(times)} of the {declared} frames its header declares"
        if previous is None:
            raise MediaError(f"{self.path.name}: no decodable video frames (corrupt or truncated)")
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / self.fps
        count = min(limit, max(1, int(np.floor((times[-1] + step) * self.fps + 1e-6))))
        while not self.native and emitted < count:
            yield previous
            emitted += 1
        self.num_frames = count if self.native else emitted
        self.times = np.asarray(times)
        self.notes = [f"truncated: video decoding stopped at {times[-1]:.2f} s ({truncated})"] if truncated else []
        if abs(self.source_fps - self.fps) > 0.01:
            self.notes.append(f"video resampled from {self.source_fps:.2f} to {self.fps:g} fps")


def _prefetched(produce: Callable[[], Iterator[_Item]], depth: int) -> Iterator[_Item]:
    """``produce()``'s items, made by a daemon thread up to ``depth`` ahead; its exception is raised
    here, in order, and closing this generator early stops the thread."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=run, name="syncopt-decode", daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def upright(frame) -> np.ndarray:
    """A decoded PyAV frame as ``(H, W, 3)`` RGB, turned as its display matrix says (a portrait phone
    video is stored landscape with a rotation tag; FFmpeg's ``autorotate`` turns it the same way)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns (PyAV VideoFrame.rotation)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class LazyFrame:
    """A decoded frame that becomes ``(H, W, 3)`` uint8 RGB only where asked: whole (:meth:`rgb`) or
    a box of it (:meth:`region`), each exactly the pixels of :func:`upright` (FFmpeg's swscale with
    the stream's colour matrix and range, turned as the display matrix says).

    A 4:2:0 frame's box is cut from its Y, U and V planes at even offsets and only it is converted:
    swscale's unscaled 4:2:0 -> RGB conversion gives each 2x2 block its chroma sample, so the box's
    pixels are the whole conversion's (``tests/test_media.py`` checks it). Other pixel formats, and
    frames of odd width or height, are converted whole on construction.
    """

    def __init__(self, frame: av.VideoFrame) -> None:
        self._turns = round((frame.rotation or 0) / 90) % 4
        planar = frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0
        self._frame = frame if planar else None
        self._rgb = None if planar else upright(frame)
        width, height = (frame.height, frame.width) if self._turns % 2 else (frame.width, frame.height)
        self.shape: tuple[int, int, int] = (height, width, 3)  # upright, as rgb()'s

    def rgb(self) -> np.ndarray:
        """The whole frame, upright."""
        return self._rgb if self._rgb is not None else upright(self._frame)

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """``rgb()[y0:y1, x0:x1]`` (``0 <= x0 < x1 <= width``, the same for y) converting only that box."""
        height, width = self.shape[:2]
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"box {x0},{y0},{x1},{y1} is not inside the {width}x{height} frame")
        if self._rgb is not None:
            return self._rgb[y0:y1, x0:x1]
        frame = self._frame
        sx0, sy0, sx1, sy1 = _turned_box((x0, y0, x1, y1), -self._turns % 4, width, height)  # in the stored frame
        # even offsets (whole chroma blocks); sizes rounded up to 32 so that consecutive boxes of a
        # track reuse one swscale context (its setup costs as much as converting a face's box)
        ex0, ey0 = sx0 & ~1, sy0 & ~1
        ex1 = min(ex0 + -(-(sx1 - ex0) // 32) * 32, frame.width)
        ey1 = min(ey0 + -(-(sy1 - ey0) // 32) * 32, frame.height)
        rgb = _convert_box(frame, ex0, ey0, ex1, ey1)[sy0 - ey0:sy1 - ey0, sx0 - ex0:sx1 - ex0]
        return np.ascontiguousarray(np.rot90(rgb, self._turns)) if self._turns else rgb


def _turned_box(box: tuple[int, int, int, int], turns: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` of a ``width`` x ``height`` image's box in ``np.rot90(image, turns)``."""
    x0, y0, x1, y1 = box
    return ((x0, y0, x1, y1), (y0, width - x1, y1, width - x0), (width - x1, height - y1, width - x0, height - y0),
            (height - y1, x0, height - y0, x1))[turns]


_local = threading.local()  # a swscale context per thread: reused while the box size stays


def _convert_box(frame: av.VideoFrame, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """RGB of the box (even ``x0, y0``; even sizes or the frame's edge) of a 4:2:0 ``frame``."""
    import av
    from av.video.reformatter import VideoReformatter

    box = av.VideoFrame(x1 - x0, y1 - y0, frame.format.name)
    for source, target, step in zip(frame.planes, box.planes, (1, 2, 2)):
        plane = np.frombuffer(source, np.uint8).reshape(source.height, source.line_size)
        out = np.frombuffer(target, np.uint8).reshape(target.height, target.line_size)
        out[:, :target.width] = plane[y0 // step:y1 // step, x0 // step:x1 // step]
    box.colorspace, box.color_range = frame.colorspace, frame.color_range
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter.reformat(box, format="rgb24", threads=1).to_ndarray()


@functools.cache
def _fixed_mmap_threshold() -> None:
    """Keep glibc's malloc from moving its mmap threshold up (it does after the first large free):
    decoded frames are then mapped and unmapped whole instead of landing on the heap among small
    long-lived arrays (landmarks, crops), where the freed frame memory could not go back to the OS.
    Measured: face-mesh tracking of a 640x360 minute grew RSS by 584 MB with the moving threshold,
    99 MB with it fixed at glibc's 128 KiB default. A no-op off glibc."""
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class AudioTrack:
    samples: np.ndarray  # float32 mono at the requested rate, in [-1, 1]
    source_rate: int
    source_channels: int


def decode_audio(path: str | os.PathLike, sample_rate: int = 16000, require_audio: bool = True) -> AudioTrack:
    """The first audio stream mixed to mono and resampled to ``sample_rate`` (FFmpeg's swresample).

    Raises :class:`NoAudioError` for a missing, silent or constant track when ``require_audio``.
    """
    import av

    p = Path(path)
    with _open(p) as container:
        stream = container.streams.audio[0] if container.streams.audio else None
        # no codec context: a codec FFmpeg cannot decode, or a damaged header (found by fuzzing)
        if stream is None or stream.codec_context is None:
            if require_audio:
                raise NoAudioError(f"{p.name} has no audio stream" if stream is None else
                                   f"{p.name}: its audio stream has no decoder (unknown or damaged codec)")
            return AudioTrack(np.zeros(0, np.float32), 0, 0)
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
    audio = np.clip(np.concatenate(chunks) if chunks else np.zeros(0, np.float32), -1.0, 1.0).astype(np.float32)
    if require_audio and (np.abs(audio).max(initial=0.0) < SILENCE_PEAK or np.ptp(audio) == 0):
        raise NoAudioError(f"{p.name}: the audio track is silent or constant")
    return AudioTrack(audio, source_rate, channels)


def fit_audio(audio: np.ndarray, num_frames: int, fps: float = 25.0, sample_rate: int = 16000,
              notes: list[str] | None = None) -> np.ndarray:
    """``audio`` trimmed or zero-padded to exactly ``num_frames / fps`` seconds (noted past a frame)."""
    target = int(round(num_frames * sample_rate / fps))
    diff = len(audio) - target
    if abs(diff) > sample_rate / fps and notes is not None:
        notes.append(f"audio {'trimmed' if diff > 0 else 'padded'} by {abs(diff) / sample_rate * 1000:.0f} ms "
                     f"to match the video")
    return audio[:target] if diff > 0 else np.pad(audio, (0, -diff))


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def mfcc(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """``(13, N)`` MFCC at 100 per second, equal to ``python_speech_features.mfcc`` defaults
    (:data:`syncopt.core.spec.MFCC`).

    The original pipeline feeds int16 PCM values (scipy.io.wavfile), so float audio is scaled
    by 32768 first. Frames of 25 ms every 10 ms, zero-padded at the end, pre-emphasis 0.97,
    512-point power spectrum, 26 mel filters, log (zeros floored at machine eps), DCT-II
    (orthonormal), 13 coefficients, lifter 22, c0 replaced by the log frame energy.
    """
    signal = np.asarray(audio, dtype=np.float64) * MFCC.input_scale
    signal = np.append(signal[:1], signal[1:] - MFCC.pre_emphasis * signal[:-1])
    win, step = MFCC.window(sample_rate), MFCC.hop(sample_rate)
    n = 1 if len(signal) <= win else 1 + int(np.ceil((len(signal) - win) / step))
    padded = np.concatenate([signal, np.zeros((n - 1) * step + win - len(signal))])
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::step][:n]
    return cepstra(frames, mel_filterbank(sample_rate))


def cepstra(frames: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """``(13, n)`` MFCC columns of pre-emphasised analysis windows ``(n, window)``: power spectrum,
    mel filters ``bank`` (:func:`mel_filterbank`), log, DCT, lifter, c0 as the log frame energy."""
    power = np.abs(np.fft.rfft(frames, MFCC.nfft)) ** 2 / MFCC.nfft
    energy = power.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = power @ bank.T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    k = MFCC.coefficients
    cep = np.log(feat) @ _dct_ortho(bank.shape[0], k).T
    cep *= 1 + (MFCC.lifter / 2.0) * np.sin(np.pi * np.arange(k) / MFCC.lifter)
    cep[:, 0] = np.log(energy)
    return cep.T.astype(np.float32)


def _dct_ortho(n: int, k: int) -> np.ndarray:
    """The first ``k`` rows of the orthonormal DCT-II matrix of size ``n`` (``scipy.fft.dct(x,
    norm="ortho")`` is ``x @ _dct_ortho(n, n).T``; a matrix here, as scipy.fft costs start-up)."""
    rows = np.cos(np.pi * np.arange(k)[:, None] * (2 * np.arange(n) + 1) / (2 * n)) * np.sqrt(2.0 / n)
    rows[0] /= np.sqrt(2.0)
    return rows


def mel_filterbank(sample_rate: int) -> np.ndarray:
    """Triangular mel filters on FFT bins, laid out as python_speech_features.get_filterbanks."""
    nfft, nfilt = MFCC.nfft, MFCC.mel_filters

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
    per_frame = MFCC.per_second / fps
    if abs(per_frame - round(per_frame)) > 1e-9:
        raise ValueError(f"{fps} fps does not give a whole number of MFCC steps (100/s) per frame")
    want = int(round(per_frame)) * num_frames
    feats = mfcc(audio, sample_rate)
    if feats.shape[1] >= want:
        return feats[:, :want]
    return np.pad(feats, ((0, 0), (0, want - feats.shape[1])), mode="edge")
