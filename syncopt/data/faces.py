"""Face detection, tracking and cropping, after the original SyncNet pipeline (joonson/syncnet_python
run_pipeline.py): detect faces per frame, link detections into tracks by IoU between consecutive
detections, bridge a few missed frames by linear interpolation, drop short tracks, median-smooth
the box centre and size over time, and cut a padded square crop around the face.

Detection uses OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``) instead
of the original S3FD network: it ships with the OpenCV 4.x wheels, so nothing is downloaded. Its
limits: frontal (roughly +-30 degree) faces only, no profiles, weak on small (< ``min_size`` px),
dark or occluded faces, and a relative score rather than a calibrated probability. OpenCV 5 moved
``CascadeClassifier`` and the cascade files to opencv-contrib; with a plain OpenCV 5 wheel
:func:`detect_faces` raises :class:`InputFileError` (see :func:`detector_available`). For inputs that
are already face crops use :func:`whole_frame_track` instead of detection.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import median_filter

from syncopt.errors import InputFileError, InputSpecError

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


def detect_faces(frame: np.ndarray, min_size: int = 40) -> np.ndarray:
    """Frontal faces in one ``(H, W, 3)`` uint8 RGB frame -> ``(k, 5)`` float32 ``x1,y1,x2,y2,score``.

    ``score`` is ``n / (n + 5)`` for ``n`` merged cascade windows (at least 6 are required, so
    scores lie in ``[6/11, 1)``): a relative confidence, not a probability.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputSpecError(f"detect_faces expects an (H, W, 3) RGB frame, got shape {frame.shape}")
    gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY))
    rects, counts = _face_cascade().detectMultiScale2(gray, scaleFactor=_SCALE_FACTOR, minNeighbors=_MIN_NEIGHBORS,
                                                      minSize=(min_size, min_size))
    out = np.zeros((len(rects), 5), np.float32)
    if len(rects):
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        counts = np.asarray(counts, np.float32).reshape(-1)
        out[:, :2] = rects[:, :2]
        out[:, 2:4] = rects[:, :2] + rects[:, 2:]
        out[:, 4] = counts / (counts + _MIN_NEIGHBORS)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(m, 4)`` and ``(k, 4)`` x1,y1,x2,y2 boxes -> ``(m, k)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:4] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:4] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise InputSpecError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")


def track_faces(frames: np.ndarray, detect_every: int = 1, iou_threshold: float = 0.5, max_gap: int = 5,
                min_track: int = 10, detector: Detector = detect_faces) -> list[FaceTrack]:
    """Face tracks in ``(T, H, W, 3)`` uint8 RGB ``frames``, longest first (empty if none).

    ``detector`` runs on every ``detect_every``-th frame. A detection joins the track whose last box
    overlaps it most (IoU >= ``iou_threshold``, greedy, one detection per track) if that track missed
    at most ``max_gap`` detector runs; otherwise it starts a new track. Frames between a track's
    detections get linearly interpolated boxes (score 1.0); a track ends at its last detection.
    Tracks spanning fewer than ``min_track`` frames are dropped; the rest get their box centre and
    size median-smoothed over 13 frames.
    """
    _check_frames(frames)
    if detect_every < 1:
        raise InputSpecError(f"detect_every must be >= 1, got {detect_every}")
    max_step = (max_gap + 1) * detect_every
    raw: list[list[tuple[int, np.ndarray]]] = []  # per track: (frame, x1,y1,x2,y2,score)
    for t in range(0, len(frames), detect_every):
        dets = np.asarray(detector(frames[t]), np.float32).reshape(-1, 5)
        live = [i for i, tr in enumerate(raw) if t - tr[-1][0] <= max_step]
        unmatched = set(range(len(dets)))
        if live and len(dets):
            iou = _iou(np.stack([raw[i][-1][1][:4] for i in live]), dets[:, :4])
            while iou.max() >= iou_threshold:
                r, c = np.unravel_index(np.argmax(iou), iou.shape)
                raw[live[r]].append((t, dets[c]))
                unmatched.discard(int(c))
                iou[r, :] = -1
                iou[:, c] = -1
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
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    kernel = min(_SMOOTH_KERNEL, len(span))
    centre = median_filter(centre, size=(kernel, 1), mode="nearest")
    size = median_filter(size, size=(kernel, 1), mode="nearest")
    smoothed = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    return FaceTrack(start=int(known[0]), boxes=smoothed, scores=scores)


def crop_track(frames: np.ndarray, track: FaceTrack, crop_size: int, margin: float = 0.4) -> np.ndarray:
    """Square face crops ``(n, crop_size, crop_size, 3)`` uint8 for the frames of ``track``.

    Each crop is centred on the track's box with side ``max(w, h) * (1 + margin)``; parts outside
    the frame are black. ``margin=0`` on a :func:`whole_frame_track` of square frames just resizes.
    """
    _check_frames(frames)
    if track.start < 0 or track.end > len(frames):
        raise InputSpecError(f"track frames {track.start}..{track.end} outside the clip's {len(frames)} frames")
    height, width = frames.shape[1:3]
    out = np.empty((len(track.boxes), crop_size, crop_size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(track.boxes.astype(np.float64)):
        side = max(1, int(round(max(x2 - x1, y2 - y1) * (1 + margin))))
        left = int(round((x1 + x2 - side) / 2))
        top = int(round((y1 + y2 - side) / 2))
        canvas = np.zeros((side, side, 3), np.uint8)
        sx0, sy0 = max(left, 0), max(top, 0)
        sx1, sy1 = min(left + side, width), min(top + side, height)
        if sx1 > sx0 and sy1 > sy0:
            canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = frames[track.start + i, sy0:sy1, sx0:sx1]
        interp = cv2.INTER_AREA if side > crop_size else cv2.INTER_LINEAR
        out[i] = cv2.resize(canvas, (crop_size, crop_size), interpolation=interp)
    return out


def whole_frame_track(num_frames: int, height: int, width: int) -> FaceTrack:
    """A track whose box is the full frame in every frame: for clips that are already face crops."""
    boxes = np.tile(np.array([0, 0, width, height], np.float32), (num_frames, 1))
    return FaceTrack(start=0, boxes=boxes, scores=np.ones(num_frames, np.float32))


def face_crops(frames: np.ndarray, mode: str, crop_size: int, min_track: int,
               source: str = "the clip") -> list[tuple[FaceTrack, np.ndarray]]:
    """Face tracks with their crops, longest first: ``mode`` 'detect' tracks faces (raising
    :class:`MediaError` when there are none), 'full' takes whole frames as the face crop."""
    from syncopt.errors import MediaError, UsageError

    if mode == "full":
        track = whole_frame_track(len(frames), *frames.shape[1:3])
        return [(track, crop_track(frames, track, crop_size, margin=0.0))]
    if mode != "detect":
        raise UsageError(f"unknown crop mode '{mode}' (choose detect or full)")
    tracks = track_faces(frames, min_track=min_track)
    if not tracks:
        raise MediaError(f"no face found in {source} (use --crop full if the video is already a face crop)")
    return [(track, crop_track(frames, track, crop_size)) for track in tracks]
