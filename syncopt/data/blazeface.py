"""BlazeFace short-range face detection (MediaPipe's ``face_detection_short_range.tflite``).

Pre- and post-processing follow MediaPipe's published graph ``face_detection_short_range.pbtxt``
(mediapipe/modules/face_detection): the frame letterboxed to 128x128 RGB in [-1, 1]; 896 SSD
anchors from ``SsdAnchorsCalculator`` (4 layers, strides 8, 16, 16, 16, aspect ratio 1 plus one
interpolated scale, fixed anchor size, offset 0.5); ``TensorsToDetectionsCalculator`` decoding
(16 values per anchor: box centre x, y, width, height, then 6 keypoints x, y, all divided by 128
and the centre added; score = sigmoid of the logit clipped to +-100, kept from 0.5); weighted
non-maximum suppression at IoU 0.3 (``NonMaxSuppressionCalculator``, algorithm WEIGHTED).
Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs", 2019.

The short-range model is trained on faces that fill a good part of a selfie frame; to find the
small faces of wide or tall shots (a seated speaker in a 1080x1920 video) the frame is also searched
in overlapping square tiles at finer scales, coarse to fine, stopping at the first scale that finds
a face. Detections touching an inner tile border (a cut face) are dropped, and all are merged by the
same weighted NMS in frame coordinates.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from syncopt.core.errors import InputSpecError
from syncopt.data.faces import iou
from syncopt.data.litert import shared_model

MODEL_FILE = "face_detection_short_range.tflite"
INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)
ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 and the interpolated scale (interpolated_scale_aspect_ratio 1.0)
NUM_KEYPOINTS = 6
# Keypoint order of the model (MediaPipe face_detection.proto comments): 0 and 1 the eyes (0 on the
# image left of an upright frontal face), 2 nose tip, 3 mouth centre, 4 and 5 the ear tragions.
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTRE = 0, 1, 2, 3
MIN_SCORE = 0.5
NMS_IOU = 0.3
SCORE_CLIP = 100.0
# Columns of a detection row: box, score, then keypoints x0, y0, ..., x5, y5 (frame pixels).
DETECTION_COLUMNS = 5 + 2 * NUM_KEYPOINTS
_X_COLUMNS = [0, 2, *range(5, DETECTION_COLUMNS, 2)]
_Y_COLUMNS = [1, 3, *range(6, DETECTION_COLUMNS, 2)]


def ssd_anchors(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES,
                per_layer: int = ANCHORS_PER_LAYER, offset: float = 0.5) -> np.ndarray:
    """Anchor centres ``(N, 2)`` x, y in [0, 1], in the model's output order.

    As ``SsdAnchorsCalculator`` with ``fixed_anchor_size``: consecutive layers of equal stride
    share one feature map of side ``ceil(input_size / stride)`` and pool their anchors; anchors
    run row by row, cell by cell, then anchor by anchor. Sizes are fixed at 1 (the box regressors
    are scaled by the input size), so only centres are kept.
    """
    out, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        side = math.ceil(input_size / strides[i])
        ys, xs = np.mgrid[0:side, 0:side]
        centres = np.stack([(xs.ravel() + offset) / side, (ys.ravel() + offset) / side], axis=1)
        out.append(np.repeat(centres, per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


ANCHORS = ssd_anchors()


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray = ANCHORS,
           min_score: float = MIN_SCORE, scale: float = INPUT_SIZE) -> np.ndarray:
    """Raw outputs ``(N, 16)``, ``(N,)`` -> detections ``(k, 17)`` in input-tensor units [0, 1]
    (x1, y1, x2, y2, score, keypoints), only those scoring at least ``min_score``, unsuppressed."""
    if len(regressors) != len(anchors):
        raise InputSpecError(f"BlazeFace gave {len(regressors)} boxes for {len(anchors)} anchors")
    score = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = score >= min_score
    raw, anc = regressors[keep] / scale, anchors[keep]
    centre = raw[:, :2] + anc
    half = raw[:, 2:4] / 2
    keypoints = raw[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + anc[:, None]
    return np.concatenate([centre - half, centre + half, score[keep, None],
                           keypoints.reshape(-1, 2 * NUM_KEYPOINTS)], axis=1).astype(np.float32)


def weighted_nms(dets: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """MediaPipe's WEIGHTED suppression: the best remaining detection and every other one that
    overlaps it by more than ``iou_threshold`` form a cluster; the cluster's box and keypoints are
    their score-weighted mean, its score the best one's. Highest score first."""
    remaining = dets[np.argsort(-dets[:, 4], kind="stable")]
    out = []
    while len(remaining):
        cluster = iou(remaining[:1, :4], remaining[:, :4])[0] > iou_threshold
        cluster[0] = True
        members = remaining[cluster]
        merged = members[0].copy()
        weights = members[:, 4:5]
        merged[:4] = (members[:, :4] * weights).sum(0) / weights.sum()
        merged[5:] = (members[:, 5:] * weights).sum(0) / weights.sum()
        out.append(merged)
        remaining = remaining[~cluster]
    return np.stack(out).astype(np.float32) if out else np.zeros((0, DETECTION_COLUMNS), np.float32)


def _tile_origins(length: int, tile: int) -> list[int]:
    """Tile starts along one axis of a resized frame: centred when it is smaller than a tile,
    else every half tile with the last flush with the far edge."""
    if length <= tile:
        return [(length - tile) // 2]
    starts = list(range(0, length - tile, tile // 2))
    return starts + [length - tile]


class BlazeFace:
    """Face detector: ``detect(frame) -> (k, 17)`` float32 rows of x1, y1, x2, y2, score and the 6
    keypoints' x, y, in frame pixels, highest score first.

    ``levels`` scales are tried coarse to fine: level 0 letterboxes the whole frame into 128 px,
    each further level doubles the scale and searches overlapping 128 px tiles; the first level
    with a face ends the search. Finer levels are skipped once a tile would cover less than
    ``min_tile`` frame pixels (faces smaller than about a fifth of that are not searched for).
    """

    def __init__(self, num_threads: int | None = None, min_score: float = MIN_SCORE, levels: int = 4,
                 min_tile: int = 160) -> None:
        self.model = shared_model(MODEL_FILE, num_threads)
        self.min_score, self.levels, self.min_tile = min_score, levels, min_tile

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.detect(frame)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputSpecError(f"face detection expects (H, W, 3) uint8 RGB frames, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        base = INPUT_SIZE / max(height, width)
        for level in range(self.levels):
            factor = base * 2 ** level
            if level and INPUT_SIZE / factor < self.min_tile:
                break
            found = self._detect_scaled(frame, min(factor, 1.0) if level else factor)
            if len(found):
                return found
            if factor >= 1.0:
                break
        return np.zeros((0, DETECTION_COLUMNS), np.float32)

    def _detect_scaled(self, frame: np.ndarray, factor: float) -> np.ndarray:
        """Detections over 128 px tiles of ``frame`` resized by ``factor``, in frame pixels."""
        height, width = frame.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        small = cv2.resize(frame, size, interpolation=interp) if size != (width, height) else frame
        sh, sw = small.shape[:2]
        fx, fy = sw / width, sh / height  # the exact factors after rounding
        found = []
        for y0 in _tile_origins(sh, INPUT_SIZE):
            for x0 in _tile_origins(sw, INPUT_SIZE):
                tile = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
                ys, xs = max(y0, 0), max(x0, 0)
                patch = small[ys:y0 + INPUT_SIZE, xs:x0 + INPUT_SIZE]
                tile[ys - y0:ys - y0 + patch.shape[0], xs - x0:xs - x0 + patch.shape[1]] = patch
                out = self.model(tile[None].astype(np.float32) / 127.5 - 1.0)
                dets = decode(out["regressors"][0], out["classificators"][0], min_score=self.min_score)
                if not len(dets):
                    continue
                dets[:, 0:4] *= INPUT_SIZE
                dets[:, 5:] *= INPUT_SIZE
                inner = _inner_border_hit(dets, x0, y0, sw, sh)
                dets = dets[~inner]
                dets[:, _X_COLUMNS] = (dets[:, _X_COLUMNS] + x0) / fx
                dets[:, _Y_COLUMNS] = (dets[:, _Y_COLUMNS] + y0) / fy
                found.append(dets)
        return weighted_nms(np.concatenate(found)) if found else np.zeros((0, DETECTION_COLUMNS), np.float32)


def _inner_border_hit(dets: np.ndarray, x0: int, y0: int, width: int, height: int, margin: float = 2.0) -> np.ndarray:
    """Detections (tile pixels) reaching a tile edge that lies inside the resized frame: cut faces."""
    near = np.zeros(len(dets), bool)
    if x0 > 0:
        near |= dets[:, 0] < margin
    if y0 > 0:
        near |= dets[:, 1] < margin
    if x0 + INPUT_SIZE < width:
        near |= dets[:, 2] > INPUT_SIZE - margin
    if y0 + INPUT_SIZE < height:
        near |= dets[:, 3] > INPUT_SIZE - margin
    return near
