"""Face-mesh lip features and audio features for landmark sync models and the model-free baseline.

A 468-point face mesh (MediaPipe's canonical topology) carries the same lip geometry whether a
face was filmed or rendered, so features built on it transfer between domains far better than
pixels. Per frame, the 40 lip-contour points are carried into the track's mean head pose by a 3-D
similarity transform fitted on rigid face points (so head turns, nods and moves are removed) and
divided by the inter-ocular distance; the track's median shape is then subtracted, so what remains
is motion, not the speaker's lip shape.

Point indices are MediaPipe's (``FACEMESH_LIPS`` in mediapipe/python/solutions/face_mesh_connections.py,
and the canonical mesh ``canonical_face_model.obj``): outer lip contour from the left mouth corner
(61) round the lower lip to the right corner (291) and back over the upper lip; inner contour from
78 to 308 likewise; outer eye corners 33 (subject's right) and 263 (left). The package's other mesh code takes these
indices from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIP_POINTS = LIPS_OUTER + LIPS_INNER
# Outer eye corners: 33 on the image left of an upright frontal face (the subject's right eye), 263 on
# the image right; the face mesh's ROI rotation (syncopt.data.facemesh) uses them too.
EYE_OUTER = (33, 263)
# Points that move with the head but not with the mouth: eye corners, brows, nose bridge and tip,
# forehead and the upper face oval (the jaw and cheeks move when speaking).
FACE_UP = (4, 10)  # nose tip to the top of the forehead
RIGID_POINTS = (33, 133, 362, 263, 70, 105, 300, 334, 168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 234, 454, 127, 356,
                21, 251, 162, 389)
MOUTH_CORNERS = (61, 291)
INNER_LIP_MIDDLE = (13, 14)  # upper and lower inner lip, on the midline
LIP_CHANNELS = 3 * len(LIP_POINTS)
# Each contour above starts at one mouth corner and reaches the other at its 11th point, so in the mirror
# image (left and right swapped) its point j stands where point (10 - j) mod 20 stood.
MIRROR_POINTS = tuple(20 * c + (10 - j) % 20 for c in range(2) for j in range(20))
MIN_MOTION_RMS = 1e-3  # inter-ocular units: a still mouth is not blown up to unit motion


def _similarity(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame least-squares similarity (Umeyama 1991) taking ``source (n,m,3)`` onto ``target (m,3)``:
    scale ``(n,)``, rotation ``(n,3,3)``, translation ``(n,3)``."""
    mu_s, mu_t = source.mean(1), target.mean(0)
    xs, xt = source - mu_s[:, None], target - mu_t
    cov = np.einsum("mi,nmj->nij", xt, xs) / source.shape[1]
    u, d, vt = np.linalg.svd(cov)
    flip = np.ones_like(d)
    flip[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    rotation = np.einsum("nij,nj,njk->nik", u, flip, vt)
    scale = (d * flip).sum(1) / np.maximum(np.square(xs).sum((1, 2)) / source.shape[1], 1e-12)
    translation = mu_t - scale[:, None] * np.einsum("nij,nj->ni", rotation, mu_s)
    return scale, rotation, translation


def lip_shape(points: np.ndarray) -> np.ndarray:
    """Lip contour points with the head's pose removed: ``(n, 40, 3)`` in inter-ocular units.

    Every frame's rigid face points (eye corners, brows, nose bridge, forehead, upper face oval) are
    aligned in 3-D onto the track's mean face by a similarity transform, and the lips are carried
    along, so turning, nodding, tilting or moving towards the camera does not move the lips.
    """
    xyz = points.astype(np.float64)
    rigid = xyz[:, list(RIGID_POINTS)]
    target = rigid[len(rigid) // 2]
    for _ in range(2):  # generalised Procrustes: align to a frame, then to the aligned mean
        scale, rotation, translation = _similarity(rigid, target)
        aligned = scale[:, None, None] * np.einsum("nij,nmj->nmi", rotation, rigid) + translation[:, None]
        target = aligned.mean(0)
    lips = xyz[:, list(LIP_POINTS)]
    lips = scale[:, None, None] * np.einsum("nij,nmj->nmi", rotation, lips) + translation[:, None]
    at = {i: target[RIGID_POINTS.index(i)] for i in (*EYE_OUTER, *FACE_UP)}
    across = at[EYE_OUTER[1]] - at[EYE_OUTER[0]]
    iod = max(float(np.linalg.norm(across)), 1e-6)
    x = across / iod  # the mean face's own axes: eye line, then up the nose, then out of the face
    up = at[FACE_UP[1]] - at[FACE_UP[0]]
    y = up - (up @ x) * x
    y /= max(float(np.linalg.norm(y)), 1e-6)
    axes = np.stack([x, y, np.cross(x, y)])
    return (np.einsum("ij,nmj->nmi", axes, lips - target.mean(0)) / iod).astype(np.float32)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip opening per frame ``(n,)`` in inter-ocular units."""
    xy = points[..., :2].astype(np.float64)
    iod = np.maximum(np.linalg.norm(xy[:, EYE_OUTER[1]] - xy[:, EYE_OUTER[0]], axis=1), 1e-6)
    top, bottom = xy[:, INNER_LIP_MIDDLE[0]], xy[:, INNER_LIP_MIDDLE[1]]
    return (np.linalg.norm(top - bottom, axis=1) / iod).astype(np.float32)


def lip_motion(shape: np.ndarray) -> np.ndarray:
    """Model input ``(120, n)`` from :func:`lip_shape`'s ``(n, 40, 3)``: the aligned contour minus the
    track's median shape, divided by its RMS over the track, x, y, z per point.

    The RMS division removes how widely a speaker articulates (and how large the mesh's motion is on
    a small face): studio GRID speakers move their lips a third as much as the LatentSync speakers.
    """
    motion = shape - np.median(shape, axis=0, keepdims=True)
    motion = motion / max(float(np.sqrt(np.mean(np.square(motion)))), MIN_MOTION_RMS)
    return np.ascontiguousarray(motion.reshape(len(motion), -1).T, dtype=np.float32)


def mirror_channels() -> tuple[list[int], list[float]]:
    """:func:`lip_motion`'s channels in the mirror image of the face: for each channel, the channel it
    takes and the sign it takes it with (x, across the face, changes sign; y and z do not)."""
    index = [3 * p + axis for p in MIRROR_POINTS for axis in range(3)]
    return index, [-1.0 if axis == 0 else 1.0 for _ in MIRROR_POINTS for axis in range(3)]


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


def lip_inputs(shape: np.ndarray, mfcc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``fcn_lips`` inputs without the batch axis: lip motion ``(120, n)`` and normalised MFCC ``(1, 13, 4n)``."""
    import torch

    return (torch.from_numpy(lip_motion(shape)), torch.from_numpy(normalise_mfcc(mfcc))[None])
