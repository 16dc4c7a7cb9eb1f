"""Face-mesh tracks through a video, lip geometry from them, and crops aligned by landmarks.

:func:`track_landmarks` runs as MediaPipe's face-landmark pipeline does
(``face_landmark_front_cpu.pbtxt``): BlazeFace (:mod:`syncopt.data.blazeface`) finds faces every
``detect_every`` frames, and between detections each face is followed by running the mesh
(:mod:`syncopt.data.facemesh`) on a region derived from its previous frame's mesh, averaged over
frames (:func:`~syncopt.data.facemesh.follow_roi`). Detections that
overlap a followed face are ignored; others revive a recently lost track they overlap (IoU) or start
a new one. A track is lost when the mesh's face-presence score drops below 0.5; gaps up to
``max_gap`` frames are filled by linear interpolation, and short tracks are dropped.

Point indices are those of MediaPipe's canonical face mesh topology (``canonical_face_model.obj``
and the connection lists in mediapipe/python/solutions/face_mesh_connections.py); left and right
are the subject's.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from syncopt.core.errors import InputSpecError, MediaError
from syncopt.data.facemesh import (
    MIN_PRESENCE,
    NUM_POINTS,
    FaceMesh,
    Roi,
    follow_roi,
    roi_from_detection,
    roi_from_points,
)
from syncopt.data.faces import (
    FaceTrack,
    check_frame,
    for_track_frames,
    iou,
    smooth_boxes,
    timed,
    timed_decode,
)
from syncopt.data.lipfeatures import EYE_OUTER, INNER_LIP_MIDDLE, MOUTH_CORNERS
from syncopt.data.media import LazyFrame

if TYPE_CHECKING:
    from syncopt.data.media import FrameSource

NOSE_TIP = 1
EYE_INNER = (133, 362)  # inner eye corners: subject's right, left
STABLE_POINTS = (NOSE_TIP, *EYE_OUTER, *EYE_INNER)  # points that do not move with speech
_DUPLICATE_IOU = 0.5  # two followed tracks overlapping this much are one face


@dataclass(frozen=True, eq=False)
class LandmarkTrack(FaceTrack):
    """One face's mesh over frames ``start .. end - 1``. ``boxes`` are the mesh's bounding boxes,
    centre and size median-smoothed as :class:`FaceTrack`'s; ``scores`` the mesh's face-presence
    probability, 0 on interpolated frames."""

    points: np.ndarray  # (n, 468, 3) float32 x, y, z in frame pixels


_serials = itertools.count()


class _Rows:
    """A growing stack of equal rows held in blocks of ``block`` rows: a few large allocations
    instead of one small array per frame, which over a long video fragments the heap (RSS grew
    about 50 KB a frame with per-frame arrays)."""

    def __init__(self, block: int = 256) -> None:
        self.blocks: list[np.ndarray] = []
        self.block, self.count = block, 0

    def __len__(self) -> int:
        return self.count

    def append(self, row: np.ndarray) -> None:
        if self.count % self.block == 0:
            self.blocks.append(np.empty((self.block, *row.shape), row.dtype))
        self.blocks[-1][self.count % self.block] = row
        self.count += 1

    def pop(self) -> None:
        self.count -= 1
        if self.count % self.block == 0:
            self.blocks.pop()

    def last(self) -> np.ndarray:
        return self.blocks[-1][(self.count - 1) % self.block]

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo .. hi - 1`` (a copy)."""
        return np.concatenate([self.blocks[b][max(lo - b * self.block, 0):hi - b * self.block]
                               for b in range(lo // self.block, (hi - 1) // self.block + 1)])

    def take(self) -> np.ndarray:
        """All rows as one array; the blocks are freed as they are copied."""
        out = np.empty((self.count, *self.blocks[0].shape[1:]), self.blocks[0].dtype)
        for b in range(len(self.blocks)):
            part = out[b * self.block:(b + 1) * self.block]
            part[:] = self.blocks[b][:len(part)]
            self.blocks[b] = part  # the block's memory goes; later reads see the same rows
        return out


@dataclass
class _Live:
    """A track being built: observed frames only, with their alignment similarities."""

    frames: list[int] = field(default_factory=list)
    points: _Rows = field(default_factory=_Rows)  # (468, 3) per observed frame
    scores: list[float] = field(default_factory=list)
    params: _Rows = field(default_factory=_Rows)  # (4,) per observed frame, see _similarity
    roi: Roi | None = None  # where to run the mesh on the next frame; None once lost
    serial: int = field(default_factory=lambda: next(_serials))

    @property
    def span(self) -> int:
        return self.frames[-1] + 1 - self.frames[0]

    def add(self, t: int, points: np.ndarray, score: float) -> None:
        self.frames.append(t)
        self.points.append(points)
        self.scores.append(score)
        self.params.append(_similarity(points[None])[0])

    def pop(self) -> None:
        for seq in (self.frames, self.points, self.scores, self.params):
            seq.pop()

    def last_box(self) -> np.ndarray:
        xy = self.points.last()[:, :2]
        return np.concatenate([xy.min(0), xy.max(0)])

    def params_at(self, frames: np.ndarray) -> np.ndarray:
        """Similarity parameters at ``frames`` (clipped to the track), linear between observations:
        the least-squares fit is linear in the points, so this is the fit of interpolated points."""
        frames = np.clip(frames, self.frames[0], self.frames[-1])
        lo = bisect.bisect_left(self.frames, int(frames.min())) - 1
        hi = bisect.bisect_right(self.frames, int(frames.max())) + 1
        lo, hi = max(lo, 0), min(hi, len(self.frames))
        known = np.asarray(self.frames[lo:hi])
        values = self.params.rows(lo, hi)
        return np.stack([np.interp(frames, known, values[:, j]) for j in range(values.shape[1])], axis=1)


class _Tracker:
    """The frame loop of :func:`track_landmarks`, one :meth:`push` per frame."""

    def __init__(self, detect_every: int, max_gap: int, iou_threshold: float, min_presence: float,
                 num_threads: int | None, detector: Callable[[np.ndarray], np.ndarray] | None,
                 mesh: FaceMesh | None, timings: dict[str, float] | None) -> None:
        from syncopt.data.blazeface import BlazeFace

        if detect_every < 1:
            raise InputSpecError(f"detect_every must be >= 1, got {detect_every}")
        self.detect_every, self.max_gap, self.iou_threshold = detect_every, max_gap, iou_threshold
        self.min_presence, self.timings = min_presence, timings
        self.detector = detector if detector is not None else BlazeFace(num_threads)
        self.mesh = mesh if mesh is not None else FaceMesh(num_threads)
        self.live: list[_Live] = []
        self.done: list[_Live] = []
        self.redetect = False
        self.t = -1

    def push(self, frame: np.ndarray | LazyFrame) -> None:
        lazy = isinstance(frame, LazyFrame)
        if not lazy:
            check_frame(frame)
        self.t = t = self.t + 1
        if t % self.detect_every == 0 or self.redetect:
            with timed(self.timings, "detect"):
                dets = np.asarray(self.detector(frame.rgb() if lazy else frame), np.float32)  # the whole frame
            _assign(dets, self.live, t, self.max_gap, self.iou_threshold)
        self.redetect = False
        with timed(self.timings, "landmarks"):
            for tr in self.live:
                if tr.roi is None:
                    continue
                points, presence = self.mesh(frame, tr.roi)
                if presence < self.min_presence:
                    tr.roi, self.redetect = None, True
                    continue
                tr.add(t, points, presence)
                tr.roi = follow_roi(tr.roi, roi_from_points(points))
        _drop_duplicates(self.live, t)
        ended = [tr for tr in self.live if tr.roi is None and (not tr.frames or t - tr.frames[-1] > self.max_gap)]
        self.done += [tr for tr in ended if tr.frames]
        self.live = [tr for tr in self.live if not any(tr is e for e in ended)]

    def tracks(self) -> list[_Live]:
        """Every track with observations, ended or not, in order of creation."""
        return sorted((tr for tr in self.done + self.live if tr.frames), key=lambda tr: tr.serial)


def track_landmarks(frames: Iterable[np.ndarray | LazyFrame], detect_every: int = 5, *, max_gap: int = 10,
                    min_track: int = 10, iou_threshold: float = 0.3, min_presence: float = MIN_PRESENCE,
                    num_threads: int | None = None, detector: Callable[[np.ndarray], np.ndarray] | None = None,
                    mesh: FaceMesh | None = None, timings: dict[str, float] | None = None,
                    allow_empty: bool = False) -> list[LandmarkTrack]:
    """Face-mesh tracks in RGB uint8 ``(H, W, 3)`` ``frames`` (an array or a stream, read once; a
    ``FrameSource(..., lazy=True)`` converts only the face regions), longest first.

    ``detector`` (default :class:`~syncopt.data.blazeface.BlazeFace`) runs every ``detect_every``
    frames and on the frame after a track is lost. ``timings``, if given, accumulates seconds
    spent in ``detect`` and ``landmarks``. No track raises :class:`MediaError` naming the video
    (a :class:`~syncopt.data.media.FrameSource`'s file) unless ``allow_empty``.
    """
    tracker = _Tracker(detect_every, max_gap, iou_threshold, min_presence, num_threads, detector, mesh, timings)
    for frame in frames:
        tracker.push(frame)
    kept = [tr for tr in tracker.tracks() if tr.span >= min_track]
    if not kept and not allow_empty:
        _no_face(frames)
    order = sorted(range(len(kept)), key=lambda i: (-kept[i].span, kept[i].frames[0]))
    return [_finish(kept[i]) for i in order]


def _no_face(frames: Iterable[np.ndarray]) -> None:
    name = Path(frames.path).name if hasattr(frames, "path") else "the clip"
    raise MediaError(f"no face found in {name} (use --crop full if the video is already a face crop)")


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
                young.pop()
                young.roi = None
                break


def _finish(tr: _Live) -> LandmarkTrack:
    """Interpolate a track's observed frames onto every frame of its span."""
    known = np.asarray(tr.frames)
    span = known[-1] + 1 - known[0]
    points = np.empty((span, NUM_POINTS, 3), np.float32)
    scores = np.zeros(span, np.float32)
    observed = tr.points.take()
    points[known - known[0]] = observed
    scores[known - known[0]] = tr.scores
    for (a, pa), (b, pb) in zip(zip(known[:-1], observed[:-1]), zip(known[1:], observed[1:])):
        if b - a > 1:
            w = ((np.arange(a + 1, b) - a) / (b - a))[:, None, None].astype(np.float32)
            points[a + 1 - known[0]:b - known[0]] = (1 - w) * pa + w * pb
    return LandmarkTrack(start=int(known[0]), boxes=_mesh_boxes(points), scores=scores, points=points)


def _mesh_boxes(points: np.ndarray) -> np.ndarray:
    """Per-frame bounding boxes of ``(n, 468, >=2)`` meshes, centre and size median-smoothed."""
    xy = points[..., :2]
    return smooth_boxes(np.concatenate([xy.min(1), xy.max(1)], axis=1))


def on_timeline(track: LandmarkTrack, times: np.ndarray, fps: float, num_frames: int) -> LandmarkTrack | None:
    """``track``, tracked on a video's own frames (decoded at ``times`` seconds), linearly interpolated onto
    the ``fps`` timeline of ``num_frames`` frames: the frames whose time lies within the track's span.

    A 30 fps video's lips then move at their true times on the 25 fps timeline instead of at the
    latest frame's (up to 27 ms late, in a saw-tooth); on a video already at ``fps`` it is the identity.
    None when no timeline frame falls within the track.
    """
    t = np.asarray(times, np.float64)[track.start:track.end]
    frames = np.arange(num_frames)
    inside = frames[(frames / fps >= t[0] - 1e-6) & (frames / fps <= t[-1] + 1e-6)]
    if not len(inside):
        return None
    at = inside / fps
    right = np.clip(np.searchsorted(t, at - 1e-6), 1, max(len(t) - 1, 1)) if len(t) > 1 else np.zeros_like(inside)
    left = np.maximum(right - 1, 0)
    gap = t[right] - t[left]
    w = np.where(gap > 0, (at - t[left]) / np.where(gap > 0, gap, 1), 0.0).clip(0, 1)
    points = ((1 - w)[:, None, None] * track.points[left] + w[:, None, None] * track.points[right]).astype(np.float32)
    scores = np.minimum(track.scores[left], track.scores[right])
    return LandmarkTrack(start=int(inside[0]), boxes=_mesh_boxes(points), scores=scores, points=points)


def track_video(source: FrameSource, *, detect_every: int = 5, min_track: int = 10,
                timings: dict[str, float] | None = None) -> list[LandmarkTrack]:
    """Face-mesh tracks of a ``native`` frame source, tracked on the video's own frames and interpolated
    onto the source's ``fps`` timeline (:func:`on_timeline`), longest first. ``timings``, if given,
    accumulates the seconds of ``decode video``, ``detect`` and ``landmarks``."""
    if not source.native:
        raise InputSpecError("track_video needs a FrameSource(..., native=True): it interpolates from frame times")
    frames = timed_decode(source, timings) if timings is not None else source
    tracks = track_landmarks(frames, detect_every=detect_every, min_track=min_track, timings=timings, allow_empty=True)
    timed = (on_timeline(t, source.times, source.fps, source.num_frames) for t in tracks)
    return sorted((t for t in timed if t is not None), key=lambda t: (-len(t.points), t.start))


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
_ALIGN_POINTS = [*EYE_OUTER, *MOUTH_CORNERS]


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


def _similarity(points: np.ndarray) -> np.ndarray:
    """``(n, 4)`` per-frame similarity ``a.real, a.imag, b.real, b.imag`` mapping a template point
    ``z`` (as a complex number) to ``a * z + b`` in the frame: the least-squares fit of
    :data:`TEMPLATE` to the eye and mouth corners of ``points`` ``(n, 468, >=2)``."""
    w = points[:, _ALIGN_POINTS, :2].astype(np.float64)
    mean = w.mean(1)
    wx, wy = (w - mean[:, None]).transpose(2, 0, 1)
    zx, zy = (TEMPLATE - TEMPLATE.mean(0)).T / np.sum((TEMPLATE - TEMPLATE.mean(0)) ** 2)
    a_re, a_im = wx @ zx + wy @ zy, wy @ zx - wx @ zy  # sum of conj(z) * w: scale * e^(i angle)
    mx, my = TEMPLATE.mean(0)
    return np.stack([a_re, a_im, mean[:, 0] - (a_re * mx - a_im * my), mean[:, 1] - (a_re * my + a_im * mx)], axis=1)


def _region_affine(params: np.ndarray, size: int, region: str) -> np.ndarray:
    """``(n, 2, 3)`` crop-pixel -> frame-pixel affines of ``region`` under similarities ``params``."""
    if region not in REGIONS:
        raise InputSpecError(f"unknown crop region '{region}' (choose {', '.join(REGIONS)})")
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


def _gaussian(smooth: float) -> np.ndarray:
    """scipy's ``gaussian_filter1d`` kernel: radius ``int(4 * smooth + 0.5)``, normalised."""
    radius = int(4.0 * smooth + 0.5)
    x = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (x / smooth) ** 2)
    return w / w.sum()


def alignment(points: np.ndarray, size: int, region: str = "face", smooth: float = 2.0) -> np.ndarray:
    """``(n, 2, 3)`` affines from ``size`` px crop pixels to frame pixels (continuous coordinates).

    Per frame, the similarity (rotation, scale, translation) that best maps :data:`TEMPLATE` onto
    the eye and mouth corners (least squares); its parameters are smoothed over time with a
    Gaussian of ``smooth`` frames (0: none; the track's ends repeated), then ``region`` picks the
    square to cut.
    """
    from scipy.ndimage import gaussian_filter1d  # lazily: not on sync's path

    params = _similarity(points)
    if smooth > 0 and len(params) > 1:
        params = gaussian_filter1d(params, smooth, axis=0, mode="nearest")
    return _region_affine(params, size, region)


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


def track_and_crop(frames: Iterable[np.ndarray], size: int, region: str = "face", smooth: float = 2.0, *,
                   detect_every: int = 5, max_gap: int = 10, min_track: int = 10, iou_threshold: float = 0.3,
                   min_presence: float = MIN_PRESENCE, num_threads: int | None = None,
                   timings: dict[str, float] | None = None,
                   allow_empty: bool = False) -> list[tuple[LandmarkTrack, np.ndarray]]:
    """:func:`track_landmarks` and :func:`aligned_crops` in one pass over ``frames``, longest track
    first: each frame is cut once every track's landmarks around it are final, ``max_gap`` plus the
    smoothing radius plus one frames later, so a video is decoded once and only those frames are
    held. ``timings`` also gets ``crop``."""
    _region_affine(np.zeros((0, 4)), size, region)  # an unknown region fails before any work
    tracker = _Tracker(detect_every, max_gap, iou_threshold, min_presence, num_threads, None, None, timings)
    kernel = _gaussian(smooth) if smooth > 0 else np.ones(1)
    radius = len(kernel) // 2
    offsets = np.arange(-radius, radius + 1)
    pending: deque[tuple[int, np.ndarray]] = deque()
    crops: dict[int, _Rows] = {}

    def cut(t: int, frame: np.ndarray) -> None:
        with timed(timings, "crop"):
            for tr in tracker.tracks():
                if tr.frames[0] <= t <= tr.frames[-1]:
                    params = kernel @ tr.params_at(t + offsets) if tr.span > 1 else tr.params_at(np.array([t]))[0]
                    to_frame = _region_affine(params[None], size, region)[0]
                    crops.setdefault(tr.serial, _Rows()).append(warp_crop(frame, to_frame, size))

    for frame in frames:
        tracker.push(frame)
        pending.append((tracker.t, frame))
        if len(pending) > radius + max_gap + 1:
            cut(*pending.popleft())
    while pending:
        cut(*pending.popleft())
    kept = [tr for tr in tracker.tracks() if tr.span >= min_track]
    if not kept and not allow_empty:
        _no_face(frames)
    kept.sort(key=lambda tr: (-tr.span, tr.frames[0]))
    return [(_finish(tr), crops[tr.serial].take()) for tr in kept]
