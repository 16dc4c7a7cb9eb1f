"""Face-mesh tracks through a video, lip geometry from them, and crops aligned by landmarks.

:func:`track_landmarks` runs as MediaPipe's face-landmark pipeline does
(``face_landmark_front_cpu.pbtxt``): BlazeFace (:mod:`syncopt.data.blazeface`) finds faces every
``detect_every`` frames, and between detections each face is followed by running the mesh
(:mod:`syncopt.data.facemesh`) on a region derived from its previous frame's mesh. Detections that
overlap a followed face are ignored; others revive a recently lost track they overlap (IoU) or start
a new one. A track is lost when the mesh's face-presence score drops below 0.5; gaps up to
``max_gap`` frames are filled by linear interpolation, and short tracks are dropped.

Point indices are those of MediaPipe's canonical face mesh topology (``canonical_face_model.obj``
and the connection lists in mediapipe/python/solutions/face_mesh_connections.py); left and right
are the subject's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from syncopt.data.faces import FaceTrack, check_frame, for_track_frames, iou, smooth_boxes
from syncopt.data.facemesh import (EYE_OUTER, MIN_PRESENCE, NUM_POINTS, FaceMesh, Roi, roi_from_detection,
                                   roi_from_points)
from syncopt.errors import InputSpecError, MediaError

NOSE_TIP = 1
EYE_INNER = (133, 362)  # inner eye corners: subject's right, left
MOUTH_CORNERS = (61, 291)  # outer lip corners: subject's right (image left), left
INNER_LIP_MIDDLE = (13, 14)  # inner lip on the midline: upper, lower
STABLE_POINTS = (NOSE_TIP, *EYE_OUTER, *EYE_INNER)  # points that do not move with speech
_DUPLICATE_IOU = 0.5  # two followed tracks overlapping this much are one face


@dataclass(frozen=True, eq=False)
class LandmarkTrack(FaceTrack):
    """One face's mesh over frames ``start .. end - 1``. ``boxes`` are the mesh's bounding boxes,
    centre and size median-smoothed as :class:`FaceTrack`'s; ``scores`` the mesh's face-presence
    probability, 0 on interpolated frames."""

    points: np.ndarray  # (n, 468, 3) float32 x, y, z in frame pixels


@dataclass
class _Live:
    """A track being built: observed frames only."""

    frames: list[int] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    roi: Roi | None = None  # where to run the mesh on the next frame; None once lost

    def last_box(self) -> np.ndarray:
        xy = self.points[-1][:, :2]
        return np.concatenate([xy.min(0), xy.max(0)])


@contextmanager
def _timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def track_landmarks(frames: Iterable[np.ndarray], detect_every: int = 5, *, max_gap: int = 10, min_track: int = 10,
                    iou_threshold: float = 0.3, min_presence: float = MIN_PRESENCE, num_threads: int | None = None,
                    detector: Callable[[np.ndarray], np.ndarray] | None = None, mesh: FaceMesh | None = None,
                    timings: dict[str, float] | None = None, allow_empty: bool = False) -> list[LandmarkTrack]:
    """Face-mesh tracks in RGB uint8 ``(H, W, 3)`` ``frames`` (an array or a stream, read once),
    longest first.

    ``detector`` (default :class:`~syncopt.data.blazeface.BlazeFace`) runs every ``detect_every``
    frames and on the frame after a track is lost. ``timings``, if given, accumulates seconds
    spent in ``detect`` and ``landmarks``. No track raises :class:`MediaError` naming the video
    (a :class:`~syncopt.data.media.FrameSource`'s file) unless ``allow_empty``.
    """
    from syncopt.data.blazeface import BlazeFace

    if detect_every < 1:
        raise InputSpecError(f"detect_every must be >= 1, got {detect_every}")
    detector = detector if detector is not None else BlazeFace(num_threads)
    mesh = mesh if mesh is not None else FaceMesh(num_threads)
    live: list[_Live] = []
    done: list[_Live] = []
    redetect = False
    for t, frame in enumerate(frames):
        check_frame(frame)
        if t % detect_every == 0 or redetect:
            with _timed(timings, "detect"):
                dets = np.asarray(detector(frame), np.float32)
            _assign(dets, live, t, max_gap, iou_threshold)
        redetect = False
        with _timed(timings, "landmarks"):
            for tr in live:
                if tr.roi is None:
                    continue
                points, presence = mesh(frame, tr.roi)
                if presence < min_presence:
                    tr.roi, redetect = None, True
                    continue
                tr.frames.append(t)
                tr.points.append(points)
                tr.scores.append(presence)
                tr.roi = roi_from_points(points)
        _drop_duplicates(live, t)
        ended = [tr for tr in live if tr.roi is None and (not tr.frames or t - tr.frames[-1] > max_gap)]
        done += [tr for tr in ended if tr.frames]
        live = [tr for tr in live if not any(tr is e for e in ended)]
    tracks = [_finish(tr) for tr in done + live if tr.frames and tr.frames[-1] + 1 - tr.frames[0] >= min_track]
    if not tracks and not allow_empty:
        name = Path(frames.path).name if hasattr(frames, "path") else "the clip"
        raise MediaError(f"no face found in {name} (use --crop full if the video is already a face crop)")
    return sorted(tracks, key=lambda tr: (-len(tr.boxes), tr.start))


def _assign(dets: np.ndarray, live: list[_Live], t: int, max_gap: int, iou_threshold: float) -> None:
    """Detections at frame ``t``: ignored where a followed face is, reviving a lost track they
    overlap, or starting new tracks."""
    if not len(dets):
        return
    followed = [tr for tr in live if tr.roi is not None and tr.frames]
    lost = [tr for tr in live if tr.roi is None and tr.frames and t - tr.frames[-1] <= max_gap]
    for det in dets[np.argsort(-dets[:, 4])]:
        box = det[None, :4]
        if followed and iou(np.stack([tr.last_box() for tr in followed]), box).max() >= iou_threshold:
            continue
        overlap = iou(np.stack([tr.last_box() for tr in lost]), box)[:, 0] if lost else np.zeros(0)
        if len(overlap) and overlap.max() >= iou_threshold:
            track = lost.pop(int(np.argmax(overlap)))
        else:
            track = _Live()
            live.append(track)
        track.roi = roi_from_detection(det)
        if track.frames:
            followed.append(track)


def _drop_duplicates(live: list[_Live], t: int) -> None:
    """Two tracks meshed onto one face at ``t``: the younger loses this frame and is lost."""
    seen = [tr for tr in live if tr.frames and tr.frames[-1] == t]
    seen.sort(key=lambda tr: tr.frames[0])
    for i, young in enumerate(seen):
        for old in seen[:i]:
            if old.frames[-1] == t and iou(old.last_box()[None], young.last_box()[None])[0, 0] >= _DUPLICATE_IOU:
                young.frames.pop(), young.points.pop(), young.scores.pop()
                young.roi = None
                break


def _finish(tr: _Live) -> LandmarkTrack:
    """Interpolate a track's observed frames onto every frame of its span."""
    known = np.asarray(tr.frames)
    span = known[-1] + 1 - known[0]
    points = np.empty((span, NUM_POINTS, 3), np.float32)
    scores = np.zeros(span, np.float32)
    observed = np.stack(tr.points)
    points[known - known[0]] = observed
    scores[known - known[0]] = tr.scores
    for (a, pa), (b, pb) in zip(zip(known[:-1], observed[:-1]), zip(known[1:], observed[1:])):
        if b - a > 1:
            w = ((np.arange(a + 1, b) - a) / (b - a))[:, None, None].astype(np.float32)
            points[a + 1 - known[0]:b - known[0]] = (1 - w) * pa + w * pb
    xy = points[..., :2]
    boxes = smooth_boxes(np.concatenate([xy.min(1), xy.max(1)], axis=1))
    return LandmarkTrack(start=int(known[0]), boxes=boxes, scores=scores, points=points)


def _distance(points: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    return np.linalg.norm(points[:, pair[0]].astype(np.float64) - points[:, pair[1]], axis=1)


def lip_geometry(points: np.ndarray) -> np.ndarray:
    """Per-frame ``(n, 2)`` float32 mouth opening (inner lips 13-14) and width (corners 61-291),
    each divided by the distance of the outer eye corners (33-263), all distances in 3-D (the
    mesh's z is on x's scale), so neither face size nor a head turned sideways changes them much."""
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[1:] != (NUM_POINTS, 3):
        raise InputSpecError(f"lip_geometry expects (n, {NUM_POINTS}, 3) mesh points, got {points.shape}")
    iod = np.maximum(_distance(points, EYE_OUTER), 1e-6)
    geometry = np.stack([_distance(points, INNER_LIP_MIDDLE), _distance(points, MOUTH_CORNERS)], axis=1)
    return (geometry / iod[:, None]).astype(np.float32)


# -- aligned crops -------------------------------------------------------------------------------
# A frontal face in units of the outer-eye-corner distance, origin between the outer eye corners,
# y down: outer eye corners and mouth corners, rounded means of the meshes of the 11 frontal GRID
# clips in the shared development set (two are tests/fixtures/grid_*.mpg), to which each frame's
# points are fitted by a similarity. On those clips the mesh spans x -0.76..0.77, y -0.62..1.33.
TEMPLATE = np.array([[-0.5, 0.0], [0.5, 0.0], [-0.28, 0.82], [0.28, 0.82]])
_ALIGN_POINTS = (*EYE_OUTER, *MOUTH_CORNERS)


@dataclass(frozen=True)
class CropRegion:
    """A square in template units: centre and side."""

    centre: tuple[float, float]
    side: float


REGIONS = {
    # the whole mesh (forehead to chin) and a margin of a tenth of the side each way
    "face": CropRegion(centre=(0.0, 0.35), side=2.4),
    # centred between the mouth corners: lips, the base of the nose and most of the chin
    "mouth": CropRegion(centre=(0.0, 0.82), side=1.0),
}


def alignment(points: np.ndarray, size: int, region: str = "face", smooth: float = 2.0) -> np.ndarray:
    """``(n, 2, 3)`` affines from ``size`` px crop pixels to frame pixels (continuous coordinates).

    Per frame, the similarity (rotation, scale, translation) that best maps :data:`TEMPLATE` onto
    the eye and mouth corners (least squares); its parameters are smoothed over time with a
    Gaussian of ``smooth`` frames (0: none), then ``region`` picks the square to cut.
    """
    if region not in REGIONS:
        raise InputSpecError(f"unknown crop region '{region}' (choose {', '.join(REGIONS)})")
    target = points[:, list(_ALIGN_POINTS), :2].astype(np.float64)
    w = target[..., 0] + 1j * target[..., 1]  # (n, 4) complex frame points
    z = TEMPLATE[:, 0] + 1j * TEMPLATE[:, 1]
    zc = z - z.mean()
    a = (w - w.mean(1, keepdims=True)) @ np.conj(zc) / np.sum(np.abs(zc) ** 2)  # scale * e^(i angle)
    b = w.mean(1) - a * z.mean()
    params = np.stack([a.real, a.imag, b.real, b.imag], axis=1)
    if smooth > 0 and len(params) > 1:
        params = gaussian_filter1d(params, smooth, axis=0, mode="nearest")
    a = params[:, 0] + 1j * params[:, 1]
    b = params[:, 2] + 1j * params[:, 3]
    spec = REGIONS[region]
    k = spec.side / size
    origin = complex(*spec.centre) - complex(spec.side / 2, spec.side / 2)  # crop pixel 0 in template units
    shift = a * origin + b
    out = np.empty((len(a), 2, 3))
    out[:, 0] = np.stack([a.real * k, -a.imag * k, shift.real], axis=1)
    out[:, 1] = np.stack([a.imag * k, a.real * k, shift.imag], axis=1)
    return out


def warp_crop(frame: np.ndarray, to_frame: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop whose pixels ``to_frame`` maps into ``frame``; outside is black."""
    # warpAffine has no area filter: where the crop shrinks the frame, warp at a whole multiple of
    # ``size`` near the frame's resolution and area-average down (no aliasing of fine detail)
    factor = max(1, int(np.hypot(*to_frame[:, 0])))
    big = size * factor
    sampler = to_frame.copy()
    sampler[:, :2] /= factor
    sampler[:, 2] += sampler[:, :2].sum(1) * 0.5 - 0.5  # cv2 samples at integer pixel indices
    crop = cv2.warpAffine(frame, sampler, (big, big), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if factor > 1 else crop


def aligned_crops(frames: Iterable[np.ndarray], track: LandmarkTrack, size: int, region: str = "face",
                  smooth: float = 2.0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 crops of ``track``'s frames aligned by its landmarks (see
    :func:`alignment`): ``region`` 'face' or 'mouth' (centred on the mouth)."""
    return aligned_crops_tracks(frames, [track], size, region, smooth)[0]


def aligned_crops_tracks(frames: Iterable[np.ndarray], tracks: list[LandmarkTrack], size: int, region: str = "face",
                         smooth: float = 2.0) -> list[np.ndarray]:
    """:func:`aligned_crops` for several tracks in one pass over ``frames`` (an array or a stream)."""
    transforms = [alignment(tr.points, size, region, smooth) for tr in tracks]
    return for_track_frames(frames, tracks, size,
                            lambda frame, i, k: warp_crop(frame, transforms[i][k], size))
