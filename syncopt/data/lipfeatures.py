"""Face-mesh lip features and audio features for landmark sync models and the model-free baseline.

A 468-point face mesh (MediaPipe's canonical topology) carries the same lip geometry whether a
face was filmed or rendered, so features built on it transfer between domains far better than
pixels. Per frame, the 40 lip-contour points are expressed in a face-aligned frame: translated to
the mouth centre, rotated so the outer eye corners lie on a horizontal line, and divided by the
inter-ocular distance; the track's median shape is then subtracted, so what remains is motion,
not the speaker's lip shape.

Point indices are MediaPipe's (``FACEMESH_LIPS`` in mediapipe/python/solutions/face_mesh_connections.py,
and the canonical mesh ``canonical_face_model.obj``): outer lip contour from the left mouth corner
(61) round the lower lip to the right corner (291) and back over the upper lip; inner contour from
78 to 308 likewise; outer eye corners 33 (subject's right) and 263 (left).
"""

from __future__ import annotations

import numpy as np

LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIP_POINTS = LIPS_OUTER + LIPS_INNER
EYE_CORNERS = (33, 263)
MOUTH_CORNERS = (61, 291)
INNER_LIP_MIDDLE = (13, 14)  # upper and lower inner lip, on the midline
LIP_CHANNELS = 2 * len(LIP_POINTS)
MIN_MOTION_RMS = 1e-3  # inter-ocular units: a still mouth is not blown up to unit motion


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame mouth centre ``(n,2)``, rotation ``(n,2,2)`` (eye line to horizontal) and
    inter-ocular distance ``(n,)`` from mesh points ``(n, 468, >=2)``."""
    xy = points[..., :2].astype(np.float64)
    left, right = xy[:, EYE_CORNERS[0]], xy[:, EYE_CORNERS[1]]
    eye = right - left
    iod = np.maximum(np.linalg.norm(eye, axis=1), 1e-6)
    cos, sin = eye[:, 0] / iod, eye[:, 1] / iod
    rotation = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)  # rotates by -angle
    centre = xy[:, list(MOUTH_CORNERS)].mean(1)
    return centre, rotation, iod


def lip_shape(points: np.ndarray) -> np.ndarray:
    """Lip contour points in the face-aligned frame: ``(n, 40, 2)``, in inter-ocular units."""
    centre, rotation, iod = face_frame(points)
    lips = points[:, list(LIP_POINTS), :2].astype(np.float64) - centre[:, None]
    aligned = np.einsum("nij,nkj->nki", rotation, lips) / iod[:, None, None]
    return aligned.astype(np.float32)


def lip_motion(shape: np.ndarray) -> np.ndarray:
    """Model input ``(80, n)`` from :func:`lip_shape`'s ``(n, 40, 2)``: the aligned contour minus the
    track's median shape, divided by its RMS over the track, x then y per point.

    The RMS division removes how widely a speaker articulates (and how large the mesh's motion is on
    a small face): studio GRID speakers move their lips a third as much as the LatentSync speakers.
    """
    motion = shape - np.median(shape, axis=0, keepdims=True)
    motion = motion / max(float(np.sqrt(np.mean(np.square(motion)))), MIN_MOTION_RMS)
    return np.ascontiguousarray(motion.reshape(len(motion), -1).T, dtype=np.float32)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip opening per frame ``(n,)`` in inter-ocular units."""
    _, _, iod = face_frame(points)
    top, bottom = points[:, INNER_LIP_MIDDLE[0], :2], points[:, INNER_LIP_MIDDLE[1], :2]
    return (np.linalg.norm(top - bottom, axis=1) / iod).astype(np.float32)


def normalise_mfcc(mfcc: np.ndarray) -> np.ndarray:
    """Cepstral mean and variance normalisation over the clip, per coefficient: ``(13, N)``.

    Removes the recording's level and channel colouring (studio GRID audio and a phone video
    differ mostly there), which the MFCC's c0 (log energy) and low cepstra carry.
    """
    mean = mfcc.mean(axis=1, keepdims=True)
    std = mfcc.std(axis=1, keepdims=True)
    return ((mfcc - mean) / np.maximum(std, 1e-3)).astype(np.float32)


def speech_energy(audio: np.ndarray, num_frames: int, sample_rate: int = 16000, fps: float = 25.0) -> np.ndarray:
    """Log energy of the 300-3400 Hz band (where speech formants lie) per video frame ``(num_frames,)``."""
    from scipy import signal

    sos = signal.butter(4, (300, 3400), btype="bandpass", fs=sample_rate, output="sos")
    band = signal.sosfilt(sos, np.asarray(audio, np.float64))
    hop = sample_rate / fps
    edges = np.round(np.arange(num_frames + 1) * hop).astype(int)
    power = np.square(band)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    edges = np.clip(edges, 0, len(power))
    counts = np.maximum(np.diff(edges), 1)
    energy = (cumulative[edges[1:]] - cumulative[edges[:-1]]) / counts
    return np.log(energy + 1e-8).astype(np.float32)


def lip_inputs(shape: np.ndarray, mfcc: np.ndarray) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``fcn_lips`` inputs without the batch axis: lip motion ``(80, n)`` and normalised MFCC ``(1, 13, 4n)``."""
    import torch

    return (torch.from_numpy(lip_motion(shape)), torch.from_numpy(normalise_mfcc(mfcc))[None])
