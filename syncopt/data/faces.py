"""Face detection, tracking and cropping, after the original SyncNet pipeline (joonson/syncnet_python
run_pipeline.py): detect faces per frame, link detections into tracks by IoU between consecutive
detections, bridge a few missed frames by linear interpolation, drop short tracks, median-smooth
the box centre and size over time, and cut a padded square crop around the face.

:func:`face_crops` tracks faces with MediaPipe's face mesh (:mod:`syncopt.data.landmarks`) and
cuts landmark-aligned crops; this module's Haar detector is its fallback where the TFLite runtime
is missing, and the tracker below serves any injected detector.

Haar detection uses OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``) instead
of the original S3FD network: it ships with the OpenCV 4.x wheels, so nothing is downloaded. Its
limits: frontal (roughly +-30 degree) faces only, no profiles, weak on small (< ``min_size`` px),
dark or occluded faces, and a relative score rather than a calibrated probability. OpenCV 5 moved
``CascadeClassifier`` and the cascade files to opencv-contrib; with a plain OpenCV 5 wheel
:func:`detect_faces` raises :class:`InputFileError` (see :func:`detector_available`). For inputs that
are already face crops use :func:`whole_frame_track` instead of detection.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from syncopt.core.errors import InputFileError, InputSpecError
from syncopt.data.signals import running_median

if TYPE_CHECKING:
    from syncopt.core.spec import ModelSpec

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# cv2.data.haarcascades: OpenCV 4.x wheels; /usr/share/opencv4/haarcascades: Debian's opencv-data.
_CASCADE_DIRS: tuple[str, ...] = (getattr(getattr(cv2, "data", None), "haarcascades", ""),
                                  "/usr/share/opencv4/haarcascades")
_SCALE_FACTOR = 1.1
_MIN_NEIGHBORS = 5
_SMOOTH_KERNEL = 13  # frames; the original pipeline's median filter width

Detector = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class FaceTrack:
    """One face followed over consecutive frames ``start .. end - 1``."""

    start: int
    boxes: np.ndarray  # (n, 4) float32 x1,y1,x2,y2 per frame from start, smoothed
    scores: np.ndarray  # (n,) detection confidence, 1.0 for interpolated frames

    @property
    def end(self) -> int:
        """First frame after the track."""
        return self.start + len(self.boxes)


@functools.cache
def _face_cascade() -> cv2.CascadeClassifier:
    factory = getattr(cv2, "CascadeClassifier", None)
    path = next((p for d in _CASCADE_DIRS if d and (p := Path(d) / CASCADE_FILE).is_file()), None)
    if factory is None or path is None:
        raise InputFileError(f"OpenCV {cv2.__version__} has no Haar face cascade ({CASCADE_FILE}); install "
                             "opencv-python-headless<5, or use whole frames for clips that are already face crops")
    cascade = factory(str(path))
    if cascade.empty():
        raise InputFileError(f"cannot load the Haar face cascade {path}")
    return cascade


def detector_available() -> bool:
    """Whether :func:`detect_faces` can run with this OpenCV install."""
    try:
        _face_cascade()
    except InputFileError:
        return False
    return True


def detect_faces(frame: np.ndarray, min_size: int = 40, max_side: int = 480) -> np.ndarray:
    """Frontal faces in one ``(H, W, 3)`` uint8 RGB frame -> ``(k, 5)`` float32 ``x1,y1,x2,y2,score``.

    Frames larger than ``max_side`` are searched at reduced size (as the original pipeline runs
    its detector at a quarter scale) and boxes mapped back to full-frame pixels. ``score`` is
    ``n / (n + 5)`` for ``n`` merged cascade windows (at least 6 are required, so scores lie in
    ``[6/11, 1)``): a relative confidence, not a probability.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputSpecError(f"detect_faces expects an (H, W, 3) RGB frame, got shape {frame.shape}")
    scale = min(1.0, max_side / max(frame.shape[:2]))
    gray = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    side = max(24, int(round(min_size * scale)))  # 24 px: the cascade's own window
    rects, counts = _face_cascade().detectMultiScale2(cv2.equalizeHist(gray), scaleFactor=_SCALE_FACTOR,
                                                      minNeighbors=_MIN_NEIGHBORS, minSize=(side, side))
    out = np.zeros((len(rects), 5), np.float32)
    if len(rects):
        rects = np.asarray(rects, np.float32).reshape(-1, 4) / scale
        counts = np.asarray(counts, np.float32).reshape(-1)
        out[:, :2] = rects[:, :2]
        out[:, 2:4] = rects[:, :2] + rects[:, 2:]
        out[:, 4] = counts / (counts + _MIN_NEIGHBORS)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(m, 4)`` and ``(k, 4)`` x1,y1,x2,y2 boxes -> ``(m, k)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:4] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:4] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def check_frame(frame: np.ndarray) -> None:
    """One-line error unless ``frame`` is ``(H, W, 3)`` uint8."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputSpecError(f"expected (H, W, 3) uint8 RGB frames, got {frame.dtype} {frame.shape}")


def track_faces(frames: Iterable[np.ndarray], detect_every: int = 1, iou_threshold: float = 0.5, max_gap: int = 5,
                min_track: int = 10, detector: Detector = detect_faces) -> list[FaceTrack]:
    """Face tracks in ``(H, W, 3)`` uint8 RGB ``frames`` (an array or a stream: one pass, only
    detections are kept), longest first (empty if none).

    ``detector`` runs on every ``detect_every``-th frame. A detection joins the track whose last box
    overlaps it most (IoU >= ``iou_threshold``, greedy, one detection per track) if that track missed
    at most ``max_gap`` detector runs; otherwise it starts a new track. Frames between a track's
    detections get linearly interpolated boxes (score 1.0); a track ends at its last detection.
    Tracks spanning fewer than ``min_track`` frames are dropped; the rest get their box centre and
    size median-smoothed over 13 frames.
    """
    if detect_every < 1:
        raise InputSpecError(f"detect_every must be >= 1, got {detect_every}")
    max_step = (max_gap + 1) * detect_every
    raw: list[list[tuple[int, np.ndarray]]] = []  # per track: (frame, x1,y1,x2,y2,score)
    for t, frame in enumerate(frames):
        check_frame(frame)
        if t % detect_every:
            continue
        dets = np.asarray(detector(frame), np.float32).reshape(-1, 5)
        live = [i for i, tr in enumerate(raw) if t - tr[-1][0] <= max_step]
        unmatched = set(range(len(dets)))
        if live and len(dets):
            overlap = iou(np.stack([raw[i][-1][1][:4] for i in live]), dets[:, :4])
            while overlap.max() >= iou_threshold:
                r, c = np.unravel_index(np.argmax(overlap), overlap.shape)
                raw[live[r]].append((t, dets[c]))
                unmatched.discard(int(c))
                overlap[r, :] = -1
                overlap[:, c] = -1
        raw.extend([(t, dets[c])] for c in sorted(unmatched))
    tracks = [_finish(tr) for tr in raw if tr[-1][0] + 1 - tr[0][0] >= min_track]
    return sorted(tracks, key=lambda tr: (-len(tr.boxes), tr.start))


def _finish(track: list[tuple[int, np.ndarray]]) -> FaceTrack:
    """Interpolate a track's detections onto every frame and smooth centre and size."""
    known = np.array([t for t, _ in track])
    dets = np.stack([d for _, d in track])
    span = np.arange(known[0], known[-1] + 1)
    boxes = np.stack([np.interp(span, known, dets[:, j]) for j in range(4)], axis=1)
    scores = np.ones(len(span), np.float32)
    scores[known - known[0]] = dets[:, 4]
    return FaceTrack(start=int(known[0]), boxes=smooth_boxes(boxes), scores=scores)


def smooth_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` x1,y1,x2,y2 boxes with centre and size median-filtered over 13 frames -> float32."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    centre = running_median(centre, _SMOOTH_KERNEL, ends="edge")
    size = running_median(size, _SMOOTH_KERNEL, ends="edge")
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


def crop_track(frames: np.ndarray, track: FaceTrack, crop_size: int, margin: float = 0.4) -> np.ndarray:
    """Square face crops ``(n, crop_size, crop_size, 3)`` uint8 for the frames of ``track``.

    Each crop is centred on the track's box with side ``max(w, h) * (1 + margin)``; parts outside
    the frame are black. ``margin=0`` on a :func:`whole_frame_track` of square frames just resizes.
    """
    if track.start < 0 or track.end > len(frames):
        raise InputSpecError(f"track frames {track.start}..{track.end} outside the clip's {len(frames)} frames")
    return crop_tracks(frames, [track], crop_size, margin)[0]


def crop_tracks(frames: Iterable[np.ndarray], tracks: list[FaceTrack], crop_size: int,
                margin: float = 0.4) -> list[np.ndarray]:
    """:func:`crop_track` for several tracks in one pass over ``frames`` (an array or a stream)."""
    return for_track_frames(frames, tracks, crop_size,
                            lambda frame, i, k: _crop_box(frame, tracks[i].boxes[k], crop_size, margin))


def for_track_frames(frames: Iterable[np.ndarray], tracks: list[FaceTrack], crop_size: int,
                     crop: Callable[[np.ndarray, int, int], np.ndarray]) -> list[np.ndarray]:
    """Per track, ``(n, crop_size, crop_size, 3)`` uint8 of ``crop(frame, track index, frame index
    in the track)`` over its frames, in one pass over ``frames`` (stopping after the last track)."""
    out = [np.zeros((len(tr.boxes), crop_size, crop_size, 3), np.uint8) for tr in tracks]
    last = max((tr.end for tr in tracks), default=0)
    for t, frame in enumerate(frames):
        if t >= last:
            break
        check_frame(frame)
        for i, (track, crops) in enumerate(zip(tracks, out)):
            if track.start <= t < track.end:
                crops[t - track.start] = crop(frame, i, t - track.start)
    return out


def _crop_box(frame: np.ndarray, box: np.ndarray, crop_size: int, margin: float) -> np.ndarray:
    x1, y1, x2, y2 = box.astype(np.float64)
    height, width = frame.shape[:2]
    side = max(1, int(round(max(x2 - x1, y2 - y1) * (1 + margin))))
    left = int(round((x1 + x2 - side) / 2))
    top = int(round((y1 + y2 - side) / 2))
    canvas = np.zeros((side, side, 3), np.uint8)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + side, width), min(top + side, height)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = frame[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if side > crop_size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (crop_size, crop_size), interpolation=interp)


def whole_frame_track(num_frames: int, height: int, width: int) -> FaceTrack:
    """A track whose box is the full frame in every frame: for clips that are already face crops."""
    boxes = np.tile(np.array([0, 0, width, height], np.float32), (num_frames, 1))
    return FaceTrack(start=0, boxes=boxes, scores=np.ones(num_frames, np.float32))


def face_crops(frames: Iterable[np.ndarray], mode: str, spec: ModelSpec, source: str = "the clip",
               timings: dict[str, float] | None = None) -> list[tuple[FaceTrack, np.ndarray]]:
    """Face tracks with their crops at ``spec``'s crop size, longest first: ``mode`` 'detect'
    tracks faces (raising :class:`MediaError` when there are none), 'full' takes whole frames
    as the face crop. A clip shorter than ``spec.min_frames`` raises :class:`ClipTooShortError`.

    Detection tracks the face mesh and cuts crops aligned by its landmarks (region 'face') in one
    pass (:func:`syncopt.data.landmarks.track_and_crop`; tracks are
    :class:`~syncopt.data.landmarks.LandmarkTrack`); without the TFLite runtime (ai-edge-litert)
    it falls back to the Haar cascade and padded box crops, in two passes. ``timings``, if given,
    accumulates seconds per stage: ``decode video`` (reading ``frames``), ``detect``,
    ``landmarks``, ``crop``.

    ``frames`` is an array, or a :class:`~syncopt.data.media.FrameSource` that decodes each pass;
    only a few frames are held at a time, so memory grows with the crops, not with the video.
    """
    from syncopt.core.errors import MediaError, UsageError
    from syncopt.data.litert import runtime_available

    size = spec.preprocessing.crop_size
    count = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal count
        for frame in timed_decode(frames, timings):
            count += 1
            yield frame

    if mode == "full":
        crops = []
        for frame in counted():
            with timed(timings, "crop"):
                crops.append(_crop_box(frame, np.array([0, 0, frame.shape[1], frame.shape[0]], np.float32), size, 0.0))
        spec.check_length(len(crops))
        return [(whole_frame_track(len(crops), size, size), np.stack(crops))]
    if mode != "detect":
        raise UsageError(f"unknown crop mode '{mode}' (choose detect or full)")
    if runtime_available():
        from syncopt.data.landmarks import track_and_crop

        found = track_and_crop(counted(), size, min_track=spec.min_frames, timings=timings, allow_empty=True)
        spec.check_length(count)
    else:
        with timed(timings, "detect", "decode video"):
            tracks = track_faces(counted(), min_track=spec.min_frames)
        spec.check_length(count)
        with timed(timings, "crop", "decode video"):
            found = list(zip(tracks, crop_tracks(counted(), tracks, size)))
    if not found:
        raise MediaError(f"no face found in {source} (use --crop full if the video is already a face crop)")
    return found


def timed_decode(frames: Iterable[np.ndarray], timings: dict[str, float] | None) -> Iterator[np.ndarray]:
    """``frames``, the seconds spent producing each one (decoding) added to ``timings["decode video"]``."""
    stream = iter(frames)
    while True:
        with timed(timings, "decode video"):
            frame = next(stream, None)
        if frame is None:
            return
        yield frame


@contextlib.contextmanager
def timed(timings: dict[str, float] | None, stage: str, inner: str | None = None) -> Iterator[None]:
    """Add the seconds spent in the block to ``timings[stage]`` (if ``timings`` is given), less
    what the block itself added to ``timings[inner]``."""
    if timings is None:
        yield
        return
    before = timings.get(inner, 0.0) if inner else 0.0
    t0 = time.perf_counter()
    try:
        yield
    finally:
        nested = timings.get(inner, 0.0) - before if inner else 0.0
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0 - nested
