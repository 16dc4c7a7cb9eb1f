"""A parametric 3-D lip model on the face mesh's lip contour, filmed with head motion and landmark noise.

The neutral shape is ``syncopt/assets/lip_template.json``: the median face-mesh lips and rigid face
points of GRID speaker s1 (a training speaker), in :func:`syncopt.data.lipfeatures.lip_shape`'s
frame (inter-ocular units; x along the eye line, y up the nose, z out of the face). Lip parameters
(:mod:`syncopt.data.visemes`: open, spread, protrude, tuck, plus a ``smile`` that speech does not
drive) move the 40 contour points by displacement fields shaped like the face mesh's own lip motion:
the first principal component of s1's mesh lip motion (71% of its variance) is the lower lip and the
corners going down and back together (dz about 0.8 dy; 0.6 here, which matches s1's share of z
motion better once noise is added), the upper lip following slightly.

A :class:`Face` is a speaker (mouth width, lip thickness, motion amplitude, asymmetry) and a camera
(face size in pixels, landmark noise, head motion). :func:`film` poses the rigid points and lips in
3-D, projects them to pixel coordinates as the face mesh reports them (x right, y down, z towards
the camera negative), adds landmark noise, and runs the real pipeline's pose removal
(:func:`syncopt.data.lipfeatures.lip_shape`) on the result, so pose-estimation error leaks into the
lips as it does on real video.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from syncopt.data.lipfeatures import LIP_POINTS, RIGID_POINTS, lip_shape

TEMPLATE = Path(__file__).resolve().parents[1] / "assets" / "lip_template.json"
MESH_POINTS = 468


@functools.cache
def template() -> tuple[np.ndarray, np.ndarray]:
    """Rigid points ``(26, 3)`` and lip points ``(40, 3)`` of the neutral face, inter-ocular units."""
    data = json.loads(TEMPLATE.read_text())
    return np.asarray(data["rigid"], np.float64), np.asarray(data["lips"], np.float64)


@dataclass(frozen=True)
class Face:
    """One filmed speaker: lip geometry and motion, and how the camera and tracker see it."""

    width: float = 1.0  # mouth width (x scale of the lips)
    thickness: float = 1.0  # lip thickness (outer contour's distance from the inner one)
    amplitude: float = 0.18  # inter-ocular units the lower lip moves at open = 1
    asymmetry: float = 0.0  # one side moves (1 + a) as much as the other's (1 - a)
    face_px: float = 60.0  # inter-ocular distance in pixels
    noise_px: float = 0.2  # landmark noise std, pixels
    drift_px: float = 0.3  # slowly wandering landmark error of the whole mouth, pixels
    yaw: float = 0.0  # mean head pose, degrees
    pitch: float = 0.0
    roll: float = 0.0
    head_motion: float = 3.0  # std of the head's slow rotation around its mean pose, degrees

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def random_face(rng: np.random.Generator) -> Face:
    """A speaker and camera drawn from wide ranges (studio close-ups to small faces in wide shots).

    Landmark noise scales with the face (the mesh runs on a fixed-size crop): 0.1-0.6% of the
    inter-ocular distance, a range around what matches the frame-to-frame motion of s1's mesh lips
    (about 0.2-0.45% there).
    """
    face_px = float(np.exp(rng.uniform(np.log(18), np.log(150))))
    return Face(width=float(rng.uniform(0.85, 1.15)), thickness=float(rng.uniform(0.75, 1.3)),
                amplitude=float(0.18 * np.exp(rng.uniform(-0.4, 0.4))), asymmetry=float(rng.uniform(-0.2, 0.2)),
                face_px=face_px, noise_px=face_px * float(rng.uniform(0.001, 0.006)),
                drift_px=face_px * float(rng.uniform(0.0, 0.005)),
                yaw=float(rng.uniform(-25, 25)), pitch=float(rng.uniform(-12, 12)), roll=float(rng.uniform(-10, 10)),
                head_motion=float(rng.uniform(0.5, 6.0)))


def _layout(lips: np.ndarray) -> dict[str, np.ndarray]:
    """Per-point roles of the 40 contour points: lower/upper/inner masks, u (-1..1 across), bulge b(u)."""
    k = np.arange(40) % 20
    centre = 0.5 * (lips[0, 0] + lips[10, 0])
    half = max(0.5 * abs(lips[10, 0] - lips[0, 0]), 1e-6)
    u = np.clip((lips[:, 0] - centre) / half, -1, 1)
    return {"lower": ((k >= 1) & (k <= 9)).astype(float), "upper": (k >= 11).astype(float),
            "inner": (np.arange(40) >= 20).astype(float), "u": u,
            "bulge": np.power(np.clip(1 - u ** 2, 0, 1), 0.8), "corner": np.abs(u) ** 4}


def neutral_lips(face: Face) -> np.ndarray:
    """The face's closed, relaxed lips ``(40, 3)``: the template's inner lips brought together, scaled."""
    _, lips = template()
    lips = lips.copy()
    inner = lips[20:]
    meet = 0.5 * (inner[1:10, 1] + inner[19:10:-1, 1])  # lower k pairs with upper 20 - k
    inner[1:10, 1], inner[19:10:-1, 1] = meet, meet
    lips[20:] = inner
    centre = lips.mean(0)
    lips[:, 0] = centre[0] + face.width * (lips[:, 0] - centre[0])
    # Thickness: the outer contour's distance from the inner one, at the same position across.
    inner_y = np.interp(lips[:20, 0], np.sort(lips[20:, 0]), lips[20:, 1][np.argsort(lips[20:, 0])])
    lips[:20, 1] = inner_y + face.thickness * (lips[:20, 1] - inner_y)
    return lips


def deform(params: np.ndarray, face: Face, smile: np.ndarray | None = None) -> np.ndarray:
    """Lip contours ``(n, 40, 3)`` for parameters ``(n, 4)`` (open, spread, protrude, tuck) and ``smile (n,)``."""
    base = neutral_lips(face)
    lay = _layout(base)
    lower, upper, inner, u, b, c = (lay[k] for k in ("lower", "upper", "inner", "u", "bulge", "corner"))
    outer = 1 - inner
    o, s, p, f = (params[:, i:i + 1] for i in range(4))
    sm = np.zeros_like(o) if smile is None else smile[:, None]
    a = face.amplitude * (1 + face.asymmetry * u)
    dx = a * (-0.08 * o * np.sign(u) * c + (0.12 + 0.06 * inner * (s < 0)) * s * u - 0.05 * p * u + 0.1 * sm * u)
    dy = a * (-o * b * (lower * (outer + 0.9 * inner) + upper * (0.03 * outer + 0.05 * inner))
              - 0.35 * o * c
              - 0.03 * s * b * upper * outer
              + 0.06 * p * b * (upper - lower) * outer
              + 0.5 * f * b * lower + 0.05 * f * b * upper * inner
              + 0.12 * sm * c)
    dz = a * (-0.6 * o * b * lower - 0.2 * o * c
              - 0.05 * s * c
              + 0.25 * p * (1 - 0.5 * u ** 2)
              - 0.3 * f * b * lower
              - 0.08 * sm * c)
    return base[None] + np.stack([dx, dy, dz], axis=-1)


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, frames: float) -> np.ndarray:
    """Unit-std noise ``(n, dims)`` smoothed over about ``frames`` frames (a slow random motion)."""
    raw = rng.standard_normal((n + int(6 * frames) + 1, dims))
    kernel = np.exp(-0.5 * (np.arange(-3 * frames, 3 * frames + 1) / max(frames, 1e-3)) ** 2)
    out = np.stack([np.convolve(raw[:, d], kernel / np.sqrt(np.square(kernel).sum()), mode="valid")
                    for d in range(dims)], axis=1)
    return out[:n]


def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(n, 3, 3)`` from angles in degrees (yaw about y, pitch about x, roll about z)."""
    y, p, r = (np.deg2rad(v) for v in (yaw, pitch, roll))
    one, zero = np.ones_like(y), np.zeros_like(y)
    ry = np.stack([np.stack([np.cos(y), zero, np.sin(y)], -1), np.stack([zero, one, zero], -1),
                   np.stack([-np.sin(y), zero, np.cos(y)], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, np.cos(p), -np.sin(p)], -1),
                   np.stack([zero, np.sin(p), np.cos(p)], -1)], -2)
    rz = np.stack([np.stack([np.cos(r), -np.sin(r), zero], -1), np.stack([np.sin(r), np.cos(r), zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return rz @ rx @ ry


def film(lips: np.ndarray, face: Face, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lips ``(n, 40, 3)`` on a moving head, seen by a noisy face mesh.

    Returns the mesh-like points ``(n, 468, 3)`` in pixels (only the rigid and lip points filled) and
    their pose-free lip shape ``(n, 40, 3)`` from :func:`~syncopt.data.lipfeatures.lip_shape`.
    """
    n = len(lips)
    rigid, _ = template()
    pts = np.concatenate([np.broadcast_to(rigid, (n, *rigid.shape)), lips], axis=1)
    # Brows (non-rigid, in RIGID_POINTS all the same) rise now and then: the pose fit absorbs part of it.
    brows = [RIGID_POINTS.index(i) for i in (70, 105, 300, 334)]
    pts[:, brows, 1] += 0.04 * np.clip(_smooth_noise(rng, n, 1, 8.0), 0, None)
    angles = face.head_motion * _smooth_noise(rng, n, 3, float(rng.uniform(6, 25)))
    rot = _rotation(face.yaw + angles[:, 0], face.pitch + angles[:, 1], face.roll + 0.5 * angles[:, 2])
    pts = np.einsum("nij,nmj->nmi", rot, pts)
    scale = face.face_px * np.exp(0.05 * _smooth_noise(rng, n, 1, 20.0))  # towards / away from the camera
    shift = 4 * face.face_px * np.array([1.5, 1.5, 0]) + face.face_px * 0.3 * _smooth_noise(rng, n, 3, 15.0)
    shift[:, 2] = 0
    pix = pts * scale[:, :, None] * np.array([1.0, -1.0, -1.0]) + shift[:, None]
    noise = rng.standard_normal(pix.shape) * face.noise_px
    noise[:, len(rigid):] += face.drift_px * _smooth_noise(rng, n, 3, 5.0)[:, None]
    pix = pix + noise
    mesh = np.zeros((n, MESH_POINTS, 3), np.float32)
    mesh[:, list(RIGID_POINTS)] = pix[:, :len(rigid)]
    mesh[:, list(LIP_POINTS)] = pix[:, len(rigid):]
    return mesh, lip_shape(mesh)
