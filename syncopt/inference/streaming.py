"""Real-time sync: feed a causal model chunk by chunk and read a running offset per frame.

:class:`StreamingSync` takes face crops and 16 kHz audio in pieces of any size and returns one
:class:`FrameResult` per frame as soon as it is decidable. Its outputs equal the offline causal
model on the whole clip (``tests/test_streaming.py``), because

- MFCC columns are computed incrementally with the arithmetic of
  :func:`syncopt.data.media.mfcc_for_frames` (:class:`MfccStream`); a frame's last columns
  reach 15 ms (240 samples) into the next frame, and the very last frame's are finished, as
  offline, from audio trimmed to the clip;
- the model's state (causal convolution inputs, embedding histories) is carried between chunks
  as explicit tensors (:meth:`~syncopt.models.causal.CausalSync.step`, or an exported
  step's inputs and ``<name>_out`` outputs run through :mod:`syncopt.runtimes`);
- :meth:`StreamingSync.finish` flushes the look-ahead with ``valid = 0`` padding.

Algorithmic latency of a frame: the model's look-ahead (``L`` frames), the MFCC window's 15 ms,
and the wait for the rest of the chunk it arrives in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field

from syncopt.core.errors import MediaError, NoAudioError, UsageError
from syncopt.core.spec import MFCC
from syncopt.data.media import cepstra
from syncopt.data.preprocess import frames_to_tensor

if TYPE_CHECKING:
    from syncopt.runtimes import Session

WINDOW, HOP = MFCC.window(16000), MFCC.hop(16000)  # streaming MFCC runs at 16 kHz: 25 ms every 10 ms


class MfccStream:
    """SyncNet MFCC columns (``mfcc_for_frames``' arithmetic) from audio that arrives in pieces.

    Keeps only the pre-emphasised samples from the first column not yet computed.
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        from syncopt.data.media import mel_filterbank

        if sample_rate != 16000:
            raise UsageError(f"streaming MFCC expects 16 kHz audio, not {sample_rate} Hz")
        self.bank = mel_filterbank(sample_rate)
        self.received = 0  # samples pushed
        self._emph = np.zeros(0)  # pre-emphasised samples from index self._origin
        self._origin = 0
        self._last: float | None = None

    def push(self, audio: np.ndarray) -> None:
        """Append mono float samples in [-1, 1]."""
        s = np.asarray(audio, dtype=np.float64).reshape(-1) * MFCC.input_scale
        if not len(s):
            return
        prev = np.concatenate([[s[0] if self._last is None else self._last], s[:-1]])
        e = s - MFCC.pre_emphasis * prev
        if self._last is None:
            e[0] = s[0]
        self._last = float(s[-1])
        self._emph = np.concatenate([self._emph, e])
        self.received += len(s)

    def columns(self, start: int, stop: int, end: int | None = None) -> np.ndarray:
        """Columns ``start .. stop-1`` ``(13, n)``, from samples before ``end`` (zeros after it), then
        forget the samples before column ``stop``."""
        end = self.received if end is None else end
        lo = start * HOP - self._origin
        if lo < 0:
            raise ValueError(f"column {start} was already released")
        need = (stop - 1) * HOP + WINDOW - self._origin
        signal = self._emph[:max(0, end - self._origin)]
        signal = np.pad(signal, (0, max(0, need - len(signal))))
        frames = np.lib.stride_tricks.sliding_window_view(signal[lo:need], WINDOW)[::HOP][:stop - start]
        drop = stop * HOP - self._origin
        columns = cepstra(frames, self.bank)
        self._emph, self._origin = self._emph[drop:], self._origin + drop
        return columns


def offline_columns(samples: int) -> int:
    """How many columns ``syncopt.data.media.mfcc`` computes for ``samples`` samples."""
    return 1 if samples <= WINDOW else 1 + math.ceil((samples - WINDOW) / HOP)


class FrameResult(BaseModel):
    """One frame's streaming decision."""

    frame: int
    time_s: float
    frame_offset: int = Field(description="this frame's most likely offset (frames; + = audio leads)")
    sync_prob: float = Field(description="this frame's in-sync probability")
    offset: int = Field(description="running offset: best mean log-probability over the last window")
    offset_ms: float
    confidence: float = Field(description="running score of the offset minus the median offset's")
    in_sync: bool = Field(description="|running offset| <= tolerance")


class TorchStep:
    """A causal model's :meth:`~syncopt.models.causal.CausalSync.step` (any chunk length)."""

    chunk: int | None = None

    def __init__(self, model: torch.nn.Module) -> None:
        if not hasattr(model, "step"):
            raise UsageError(f"model '{model.spec.name}' is not causal; stream with fcn_causal")
        self.model = model.eval()
        self.spec, self.max_offset, self.lookahead = model.spec, model.max_offset, model.lookahead

    def initial_state(self) -> dict[str, torch.Tensor]:
        return self.model.initial_state()

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor,
                 state: dict) -> tuple[dict[str, torch.Tensor], dict]:
        return self.model.step(video, audio, valid, state)


class SessionStep:
    """An exported streaming step (:func:`syncopt.export.stream.export_stream`) run through :mod:`syncopt.runtimes`:
    fixed chunks of :attr:`chunk` frames, the state fed as inputs and read back from ``<name>_out``."""

    def __init__(self, session: Session) -> None:
        spec = session.spec
        self.states = [t.name for t in spec.inputs if f"{t.name}_out" in spec.output_names]
        if "audio_history" not in self.states or spec.input_names[:3] != ["video", "audio", "valid"]:
            raise UsageError(f"'{spec.name}' is not a streaming step; export one with syncopt export --stream-chunk")
        shapes = {t.name: t.shape for t in spec.inputs}
        self.session, self.spec, self.chunk = session, spec, int(shapes["video"][2])
        self.max_offset = spec.max_offset
        # The audio history holds L + K frames (CausalSync.history_frames).
        self.lookahead = int(shapes["audio_history"][2]) - spec.max_offset
        self._zeros = {name: np.zeros(shapes[name], np.float32) for name in self.states}

    def initial_state(self) -> dict[str, np.ndarray]:
        return dict(self._zeros)

    def __call__(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor,
                 state: dict) -> tuple[dict[str, torch.Tensor], dict]:
        out = self.session.run({"video": video, "audio": audio, "valid": valid, **state})
        return ({k: torch.from_numpy(np.asarray(out[k])) for k in ("offset_logits", "sync_prob")},
                {name: out[f"{name}_out"] for name in self.states})


def stream_step(model: torch.nn.Module | Session) -> TorchStep | SessionStep:
    """The stepper for a causal torch model or a runtime session of an exported streaming step."""
    from syncopt.runtimes import Session

    return SessionStep(model) if isinstance(model, Session) else TorchStep(model)


class StreamingSync:
    """``push(frames, audio) -> [FrameResult]``; ``finish() -> [FrameResult]`` at the end.

    ``model``: a causal torch model (``fcn_causal``), or a :class:`syncopt.runtimes.Session` of its
    exported streaming step (ONNX, TFLite), which runs in chunks of the artifact's fixed length.
    ``frames``: ``(n, H, W, 3)`` uint8 RGB face crops (resized to the model's crop size);
    ``audio``: 16 kHz mono float samples. The two may arrive at different paces; a frame is
    processed once its audio (plus 15 ms) and the next frame are in (and, for a fixed-chunk
    artifact, a whole chunk is). The running offset averages per-frame offset log-probabilities
    over the last ``window`` frames (as ``decode_dense`` does over a clip). ``record`` keeps the
    raw per-frame outputs in :attr:`outputs`.
    """

    def __init__(self, model: torch.nn.Module | Session, window: int = 50, tolerance: int = 1,
                 record: bool = False) -> None:
        self.step = stream_step(model)
        self.spec = self.step.spec
        self.pre = self.spec.preprocessing
        self.k, self.lookahead = self.step.max_offset, self.step.lookahead
        self.window, self.tolerance = window, tolerance
        self.state = self.step.initial_state()
        self.mfcc = MfccStream(self.pre.sample_rate)
        self._pending: list[torch.Tensor] = []  # normalised (3, S, S) frames not yet processed
        self.frames_in = 0  # frames pushed
        self.processed = 0  # frames through the model
        self.emitted = 0  # results returned
        self._positions = 0  # stream steps taken, flush included
        self._logp: deque[np.ndarray] = deque()
        self._sum = np.zeros(2 * self.k + 1)
        self.outputs: list[dict[str, np.ndarray]] | None = [] if record else None
        self.finished = False

    @property
    def samples_per_frame(self) -> int:
        return round(self.pre.sample_rate / self.pre.fps)

    @property
    def audio_lookahead(self) -> int:
        """Samples past a frame's own audio that its last MFCC window reaches (240 = 15 ms)."""
        return HOP * (self.pre.mfcc_per_frame - 1) + WINDOW - self.samples_per_frame

    def push(self, frames: np.ndarray, audio: np.ndarray) -> list[FrameResult]:
        """Add frames and audio; return the frames that became decidable."""
        if self.finished:
            raise UsageError("stream already finished")
        frames = np.asarray(frames)
        if len(frames):
            self._pending.extend(frames_to_tensor(frames, self.pre).unbind(1))
            self.frames_in += len(frames)
        self.mfcc.push(audio)
        spf = self.samples_per_frame
        by_audio = (self.mfcc.received - spf - self.audio_lookahead) // spf + 1
        ready = min(self.frames_in - 1, by_audio)  # the last frame waits for the clip's end or its successor
        if self.step.chunk and ready > self.processed:
            ready -= (ready - self.processed) % self.step.chunk
        if ready <= self.processed:
            return []
        valid = torch.ones(1, ready - self.processed)
        return self._steps(*self._take(ready), valid)

    def finish(self) -> list[FrameResult]:
        """Process the remaining frames (audio trimmed or zero-padded to the video, as offline) and
        flush the look-ahead with ``valid = 0`` padding (to whole chunks for a fixed-chunk artifact)."""
        if self.finished:
            return []
        self.finished = True
        if not self.frames_in:
            return []
        spf = self.samples_per_frame
        end = self.frames_in * spf
        if self.mfcc.received < end:
            self.mfcc.push(np.zeros(end - self.mfcc.received, np.float32))
        rest = self.frames_in - self.processed
        video, audio = self._take(self.frames_in, end=end)
        chunk = self.step.chunk or max(1, rest + self.lookahead)
        pad = -(-(rest + self.lookahead) // chunk) * chunk - rest
        s = self.pre.crop_size
        video = torch.cat([video, torch.zeros(1, 3, pad, s, s)], dim=2)
        audio = torch.cat([audio, torch.zeros(1, 1, self.pre.num_mfcc, self.pre.mfcc_per_frame * pad)], dim=-1)
        return self._steps(video, audio, torch.cat([torch.ones(1, rest), torch.zeros(1, pad)], dim=1))

    def _take(self, ready: int, end: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs of frames ``processed .. ready-1``: ``video (1,3,n,S,S)``, ``audio (1,1,13,4n)``."""
        n = ready - self.processed
        per = self.pre.mfcc_per_frame
        start, stop = per * self.processed, per * ready
        if not n:
            cols = np.zeros((self.pre.num_mfcc, 0), np.float32)
        elif end is None:
            cols = self.mfcc.columns(start, stop)
        else:  # the clip's end: offline computes fewer columns and repeats the last one
            have = min(stop, offline_columns(end))
            cols = self.mfcc.columns(start, have, end=end)
            cols = np.pad(cols, ((0, 0), (0, stop - have)), mode="edge")
        s = self.pre.crop_size
        video = torch.stack(self._pending[:n], dim=1)[None] if n else torch.zeros(1, 3, 0, s, s)
        del self._pending[:n]
        self.processed = ready
        return video, torch.from_numpy(cols)[None, None]

    def _steps(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor) -> list[FrameResult]:
        """Run the frames through the model in chunks of its length (one step when it takes any)."""
        n, per = video.shape[2], self.pre.mfcc_per_frame
        chunk = self.step.chunk or n
        results = []
        for p in range(0, n, chunk):
            results += self._step(video[:, :, p:p + chunk], audio[..., per * p:per * (p + chunk)], valid[:, p:p + chunk])
        return results

    def _step(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor) -> list[FrameResult]:
        out, self.state = self.step(video, audio, valid, self.state)
        logits, prob = out["offset_logits"][0], out["sync_prob"][0]
        base = self._positions - self.lookahead  # frame of the first output
        self._positions += video.shape[2]
        last = min(logits.shape[1], self.frames_in - base)  # padding past the look-ahead yields no frames
        return [self._decide(logits[:, i], float(prob[i])) for i in range(max(0, -base), last)]

    def _decide(self, logits: torch.Tensor, prob: float) -> FrameResult:
        if self.outputs is not None:
            self.outputs.append({"offset_logits": logits.numpy().copy(), "sync_prob": np.float32(prob)})
        logp = torch.log_softmax(logits.double(), 0).numpy()
        self._logp.append(logp)
        self._sum += logp
        if len(self._logp) > self.window:
            self._sum -= self._logp.popleft()
        mean = self._sum / len(self._logp)
        best = int(mean.argmax())
        offset = best - self.k
        frame = self.emitted
        self.emitted += 1
        return FrameResult(frame=frame, time_s=frame / self.pre.fps, frame_offset=int(logp.argmax()) - self.k,
                           sync_prob=prob, offset=offset, offset_ms=1000.0 * offset / self.pre.fps,
                           confidence=float(mean[best] - np.median(mean)), in_sync=abs(offset) <= self.tolerance)

    def latency_ms(self, chunk_frames: int) -> dict[str, float]:
        """Algorithmic latency of the last frame of a chunk (first frame: plus the chunk)."""
        fps = self.pre.fps
        mfcc_ms = 1000.0 * self.audio_lookahead / self.pre.sample_rate
        return {"lookahead_ms": 1000.0 * self.lookahead / fps, "mfcc_ms": mfcc_ms,
                "chunk_ms": 1000.0 * chunk_frames / fps,
                "total_ms": 1000.0 * (self.lookahead + chunk_frames) / fps + mfcc_ms}


def read_chunks(source: str, chunk_frames: int, fps: float = 25.0, sample_rate: int = 16000,
                input_format: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(frames (n, H, W, 3) uint8 RGB, audio float32)`` pieces of about ``chunk_frames`` frames from
    a file or a live source (any URL or device FFmpeg opens, e.g. ``input_format='v4l2'``), in one
    demuxing pass, so a live source is consumed as it arrives.

    Frames go on the ``fps`` timeline (target frame ``k``: the latest source frame at or before
    ``k / fps``, as :class:`~syncopt.data.media.FrameSource`); audio is mixed to mono and resampled.
    """
    import av

    from syncopt.data.media import check_media_path, upright

    if "://" not in source and input_format is None:
        check_media_path(Path(source))
    try:
        container = av.open(source, format=input_format, metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{Path(source).name} is not a readable media source ({str(exc).splitlines()[0][:200]})") from exc
    with container:
        if not container.streams.video:
            raise MediaError(f"{Path(source).name} has no video stream")
        if not container.streams.audio or container.streams.audio[0].codec_context is None:  # none, or no decoder
            raise NoAudioError(f"{Path(source).name} has no decodable audio stream")
        streams = [container.streams.video[0], container.streams.audio[0]]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        frames: list[np.ndarray] = []
        audio: list[np.ndarray] = []
        previous, origin, emitted = None, None, 0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        frame.pts = None
                        audio += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                        continue
                    t = float(frame.time or 0.0)
                    origin = t if origin is None else origin
                    while previous is not None and emitted / fps < t - origin - 1e-6:
                        frames.append(previous)
                        emitted += 1
                    image = upright(frame)
                    if previous is not None and image.shape != previous.shape:
                        # a resolution switch (or a damaged header, found by fuzzing): one size per stream
                        import cv2

                        image = cv2.resize(image, previous.shape[1::-1], interpolation=cv2.INTER_AREA)
                    previous = image
                if len(frames) >= chunk_frames:
                    yield np.stack(frames), _joined(audio)
                    frames, audio = [], []
        except av.error.FFmpegError:
            pass  # a truncated file: keep what decoded
        if previous is not None:
            frames.append(previous)
        audio += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        if frames or audio:
            yield (np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)), _joined(audio)


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return np.clip(np.concatenate(pieces), -1, 1).astype(np.float32) if pieces else np.zeros(0, np.float32)


class StreamCropper:
    """Face crops for a stream: ``'full'`` resizes whole frames; ``'detect'`` runs the Haar detector
    every ``detect_every`` frames, follows the largest face (box smoothed exponentially) and keeps
    the last box between detections (the whole frame before the first face)."""

    def __init__(self, mode: str, crop_size: int, detect_every: int = 5, smoothing: float = 0.5) -> None:
        if mode not in ("full", "detect"):
            raise UsageError(f"unknown crop mode '{mode}' (choose detect or full)")
        self.mode, self.size, self.every, self.smoothing = mode, crop_size, detect_every, smoothing
        self.box: np.ndarray | None = None
        self.seen = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from syncopt.data.faces import _crop_box, detect_faces

        crops = []
        for frame in frames:
            h, w = frame.shape[:2]
            if self.mode == "detect" and self.seen % self.every == 0:
                faces = detect_faces(frame)
                if len(faces):
                    big = faces[np.argmax((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])), :4]
                    self.box = big if self.box is None else self.smoothing * self.box + (1 - self.smoothing) * big
            self.seen += 1
            if self.mode == "full" or self.box is None:
                crops.append(_crop_box(frame, np.array([0, 0, w, h], np.float32), self.size, 0.0))
            else:
                crops.append(_crop_box(frame, self.box, self.size, 0.4))
        return np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8)


def stream_offsets(source: str, model, chunk_ms: float = 200.0, crop: str = "detect", window: int = 50,
                   tolerance: int = 1, input_format: str | None = None) -> Iterator[list[FrameResult]]:
    """``syncopt stream``: the per-frame results after each chunk of about ``chunk_ms`` of media read
    from ``source`` (a file or live source, :func:`read_chunks`), then the last frames'. ``model``: a
    causal model or an exported streaming step's session. A source that yields no frame is a
    :class:`MediaError`."""
    stream = StreamingSync(model, window=window, tolerance=tolerance)
    pre = stream.pre
    cropper = StreamCropper(crop, pre.crop_size)
    chunk = max(1, round(chunk_ms * pre.fps / 1000))
    for frames, audio in read_chunks(source, chunk, pre.fps, pre.sample_rate, input_format):
        yield stream.push(cropper(frames), audio)
    yield stream.finish()
    if not stream.emitted:
        raise MediaError(f"{Path(source).name}: no frames decoded")
