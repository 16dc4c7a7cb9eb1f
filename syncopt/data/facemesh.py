"""The 468-point face mesh (MediaPipe's ``face_landmark.tflite``) on a rotated face region.

Follows MediaPipe's published graphs (mediapipe/modules/face_landmark): the region of interest
(ROI) is a square around the face, rotated so the eye line is horizontal and 1.5 times the long
side of the face box (``face_detection_front_detection_to_roi.pbtxt`` from a detection, eye
keypoints 0 -> 1; ``face_landmark_landmarks_to_roi.pbtxt`` from the previous frame's mesh, its
bounding box and outer eye corners 33 -> 263: ``RectTransformationCalculator`` scale 1.5,
``square_long``). ``face_landmark_cpu.pbtxt``: the ROI resampled to 192x192 RGB in [0, 1]
(replicated border), 1404 outputs = 468 x (x, y, z) in input pixels, z on x's scale
(``TensorsToLandmarksCalculator``, projected back with ``LandmarkProjectionCalculator``), and a
face-presence logit whose sigmoid is thresholded at 0.5. Kartynnik et al., "Real-time Facial
Surface Geometry from Monocular Video on Mobile GPUs", 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from syncopt.data.blazeface import LEFT_EYE, RIGHT_EYE
from syncopt.data.lipfeatures import EYE_OUTER
from syncopt.data.litert import shared_model
from syncopt.data.media import LazyFrame

MODEL_FILE = "face_landmark.tflite"
INPUT_SIZE = 192
NUM_POINTS = 468
ROI_SCALE = 1.5
MIN_PRESENCE = 0.5
# Weight of the new frame's region in the followed one (:func:`follow_roi`). Development clips
# (benchmarks/realclips/dev_plus.csv, docs/real_video.md "Sixth round"), four fcn_lips models' 1-s windows
# following shifts within +-1: unsmoothed 87.8% on average, 0.5: 89.0%, 0.3: 89.2% (2-s: 95.9 / 97.0 / 97.4%).
ROI_FOLLOW = 0.5
ROI_JUMP = 0.25  # a region moving more than this share of its side (or scaling by e^+-0.2) is taken as is


@dataclass(frozen=True)
class Roi:
    """A square region of a frame: centre and side in pixels, rotation in radians (clockwise on
    screen, i.e. from the x axis towards y, which points down)."""

    cx: float
    cy: float
    side: float
    angle: float

    def to_frame(self, size: int = INPUT_SIZE) -> np.ndarray:
        """``(2, 3)`` affine from a ``size`` x ``size`` image of the ROI to frame pixels (continuous
        coordinates, pixel ``i`` spanning ``[i, i + 1)``)."""
        k = self.side / size
        cos, sin = math.cos(self.angle) * k, math.sin(self.angle) * k
        half = size / 2
        return np.array([[cos, -sin, self.cx - cos * half + sin * half],
                         [sin, cos, self.cy - sin * half - cos * half]], np.float64)

    def box(self) -> np.ndarray:
        """Axis-aligned ``x1, y1, x2, y2`` around the rotated square."""
        reach = self.side / 2 * (abs(math.cos(self.angle)) + abs(math.sin(self.angle)))
        return np.array([self.cx - reach, self.cy - reach, self.cx + reach, self.cy + reach], np.float32)


def _roi(box: np.ndarray, start: np.ndarray, end: np.ndarray) -> Roi:
    """``DetectionsToRectsCalculator`` (rotation from ``start`` -> ``end`` to the x axis) then
    ``RectTransformationCalculator`` (square on the long side, times 1.5)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    angle = math.atan2(float(end[1] - start[1]), float(end[0] - start[0]))
    return Roi((x1 + x2) / 2, (y1 + y2) / 2, ROI_SCALE * max(x2 - x1, y2 - y1), angle)


def roi_from_detection(det: np.ndarray) -> Roi:
    """The mesh ROI of a BlazeFace detection row (:data:`syncopt.data.blazeface.DETECTION_COLUMNS`)."""
    keypoints = det[5:].reshape(-1, 2)
    return _roi(det[:4], keypoints[RIGHT_EYE], keypoints[LEFT_EYE])


def roi_from_points(points: np.ndarray) -> Roi:
    """The next frame's mesh ROI from this frame's mesh ``(468, >=2)``, as MediaPipe tracks a face."""
    xy = points[:, :2]
    box = np.concatenate([xy.min(0), xy.max(0)])
    return _roi(box, xy[EYE_OUTER[0]], xy[EYE_OUTER[1]])


def follow_roi(previous: Roi | None, current: Roi, weight: float = ROI_FOLLOW) -> Roi:
    """The region to mesh the next frame in: ``current`` (from this frame's mesh) moved towards
    ``previous`` by ``1 - weight`` (centre, log side, angle), unless it jumped (:data:`ROI_JUMP`).

    The mesh's points move with its input crop, so a region redrawn from every frame's own points
    feeds the points' jitter back into the next crop; an exponentially averaged region keeps the
    crop steady and the lip motion cleaner, at no cost (MediaPipe's graphs smooth landmarks after
    the fact instead, ``LandmarksSmoothingCalculator``)."""
    if previous is None:
        return current
    moved = math.hypot(current.cx - previous.cx, current.cy - previous.cy)
    if moved > ROI_JUMP * previous.side or abs(math.log(current.side / previous.side)) > 0.2:
        return current
    turn = math.atan2(math.sin(current.angle - previous.angle), math.cos(current.angle - previous.angle))
    return Roi(previous.cx + weight * (current.cx - previous.cx), previous.cy + weight * (current.cy - previous.cy),
               previous.side * (current.side / previous.side) ** weight, previous.angle + weight * turn)


class FaceMesh:
    """``mesh(frame, roi) -> (points (468, 3) float32 in frame pixels, face presence in [0, 1])`` of an
    RGB ``(H, W, 3)`` uint8 frame or a :class:`~syncopt.data.media.LazyFrame`."""

    def __init__(self, num_threads: int | None = None) -> None:
        self.model = shared_model(MODEL_FILE, num_threads)

    def __call__(self, frame: np.ndarray | LazyFrame, roi: Roi) -> tuple[np.ndarray, float]:
        to_frame = roi.to_frame()
        # only the ROI's box is read (a lazy frame converts only it): two pixels more each way for the
        # bilinear neighbours, clipped to the frame but never empty, so the replicated border is the frame's
        height, width = frame.shape[:2]
        bx0, by0, bx1, by1 = roi.box()
        x0, y0 = min(max(math.floor(bx0) - 2, 0), width - 1), min(max(math.floor(by0) - 2, 0), height - 1)
        x1, y1 = min(max(math.ceil(bx1) + 2, x0 + 1), width), min(max(math.ceil(by1) + 2, y0 + 1), height)
        pixels = frame.region(x0, y0, x1, y1) if isinstance(frame, LazyFrame) else frame[y0:y1, x0:x1]
        # cv2 maps output pixel indices to input indices: shift both ends by half a pixel
        sampler = to_frame.copy()
        sampler[:, 2] += to_frame[:, :2].sum(1) * 0.5 - 0.5 - np.array([x0, y0])
        patch = cv2.warpAffine(pixels, sampler, (INPUT_SIZE, INPUT_SIZE),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        out = self.model(patch[None].astype(np.float32) * (1.0 / 255.0))
        raw = out["conv2d_21"].reshape(NUM_POINTS, 3).astype(np.float64)
        points = np.empty((NUM_POINTS, 3), np.float32)
        points[:, :2] = raw[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        points[:, 2] = raw[:, 2] * (roi.side / INPUT_SIZE)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(out["conv2d_31"].reshape(-1)[0], -80, 80))))
        return points, presence
