"""Pixels of a talking face whose mouth is the 3-D lip model's contour, and the corruptions real video has.

:func:`render_face` draws, per frame, a shaded face (skin gradient, brows, eyes, nose) and a mouth
from the 40 lip-contour points of :mod:`syncopt.data.lipmodel` (outer and inner contour, as the
face mesh orders them): the cavity inside the inner contour, the upper and lower teeth along its
top and bottom edges (their visible height grows with the opening), the tongue low in the cavity,
and the lips between the contours, shaded darker on the upper lip and with a highlight on the
lower one. Polygons are drawn at 4x and area-downsampled (anti-aliased edges). Head roll, moves
and scale changes are 2-D similarity transforms per frame.

:func:`corrupt_video` applies light (gain, gamma, colour cast, slow flicker), blur, sensor noise and
an H.264 re-encode through PyAV's libx264 at a random CRF.
"""

from __future__ import annotations

import io

import numpy as np

SUPER = 4  # supersampling factor of the polygon rasteriser


def _poly(mask_shape: tuple[int, int], points: np.ndarray):
    import cv2

    mask = np.zeros(mask_shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points * SUPER).astype(np.int32)], 255)
    return mask


def _down(mask: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def mouth_colours(skin: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Lip, teeth, tongue and cavity colours (RGB 0..1) for a face of ``skin`` colour."""
    return {"lips": skin * np.array([0.85, 0.55, 0.6]) * rng.uniform(0.8, 1.0),
            "teeth": np.array([0.93, 0.9, 0.82]) * rng.uniform(0.75, 1.0),
            "tongue": np.array([0.75, 0.33, 0.35]) * rng.uniform(0.8, 1.0), "cavity": np.array([0.16, 0.05, 0.06])}


def draw_mouth(img: np.ndarray, outer: np.ndarray, inner: np.ndarray, colours: dict[str, np.ndarray],
               protrude: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """``img (S, S, 3)`` float with a mouth painted from its outer and inner contours ``(20, 2)`` in pixels
    (face-mesh order: left corner, lower lip, right corner, upper lip): lips, cavity, tongue, teeth."""
    import cv2

    size = img.shape[0]
    s2 = size * SUPER
    y = np.arange(size, dtype=np.float32)[:, None] / size
    m_outer = _down(_poly((s2, s2), outer), size)
    m_inner = _down(_poly((s2, s2), inner), size)
    top, bottom = inner[15], inner[5]  # upper and lower inner midline points
    gap = max(float(np.linalg.norm(bottom - top)), 1e-3)
    width = max(float(np.linalg.norm(inner[10] - inner[0])), 1.0)
    down = (bottom - top) / gap if gap > 1e-2 else np.array([0.0, 1.0])
    teeth_h = min(0.12 * width, 0.45 * gap)
    upper = inner[10:20]  # right corner over the upper lip towards the left corner
    m_teeth = _down(_poly((s2, s2), np.concatenate([upper, upper[::-1] + down * teeth_h])), size) * m_inner
    lower_band = np.concatenate([inner[1:10], inner[9:0:-1] - down * 0.6 * teeth_h])
    m_teeth = np.maximum(m_teeth, _down(_poly((s2, s2), lower_band), size) * m_inner * min(1.0, 3 * gap / width))
    tc = bottom - down * 0.3 * gap
    m_tongue = np.zeros((size, size), np.float32)
    cv2.ellipse(m_tongue, (int(tc[0]), int(tc[1])), (max(1, int(0.3 * width)), max(1, int(0.25 * gap))),
                -roll_deg, 0, 360, 1.0, -1, cv2.LINE_AA)
    m_tongue *= m_inner
    lip_mask = np.clip(m_outer - m_inner, 0, 1)
    # Lip shading: the upper lip darker, a highlight on the lower lip; protrusion catches more light.
    mid = 0.5 * (top + bottom) / size
    lower = np.clip((y - mid[1]) * size / width * 4, -1, 1)
    lip_shade = (1.0 + 0.15 * lower + 2.0 * protrude)[..., None]
    img = img * (1 - lip_mask[..., None]) + colours["lips"] * lip_shade * lip_mask[..., None]
    for mask, name in ((m_inner, "cavity"), (m_tongue, "tongue"), (m_teeth, "teeth")):
        img = img * (1 - mask[..., None]) + colours[name] * mask[..., None]
    return img


def render_face(lips: np.ndarray, size: int, rng: np.random.Generator, roll_deg: np.ndarray | None = None,
                shift: np.ndarray | None = None, scale: np.ndarray | None = None) -> np.ndarray:
    """Frames ``(n, size, size, 3)`` uint8 of a face speaking with ``lips (n, 40, 3)`` (lipmodel frame:
    x across, y up, inter-ocular units; z is only shading); ``roll_deg``, ``shift`` (n, 2, in units of
    ``size``) and ``scale`` (n,) move the head."""
    import cv2

    n = len(lips)
    roll = np.zeros(n) if roll_deg is None else roll_deg
    move = np.zeros((n, 2)) if shift is None else shift
    zoom = np.ones(n) if scale is None else scale
    skin = np.array([rng.uniform(0.45, 0.95), rng.uniform(0.32, 0.75), rng.uniform(0.22, 0.6)])
    colours = mouth_colours(skin, rng)
    background = rng.uniform(0.1, 0.9, 3)
    iod = rng.uniform(0.32, 0.42)  # inter-ocular distance as a fraction of the crop
    centre_lips = lips[:, :, :2].mean((0, 1))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = np.empty((n, size, size, 3), np.float32)
    for t in range(n):
        a = np.deg2rad(roll[t])
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        k = iod * zoom[t]
        face_c = np.array([0.5, 0.42]) + move[t]

        def to_px(p: np.ndarray) -> np.ndarray:
            """Face-frame (x right, y up, iod units; eyes' midpoint at 0) to crop pixels."""
            q = (p * np.array([1.0, -1.0])) @ rot.T * k + face_c
            return q * size

        img = np.empty((size, size, 3), np.float32)
        img[:] = background
        # Face: an ellipse around the eyes and mouth, lit from the upper left.
        fc = to_px(np.array([0.0, -0.55])) / size
        d = np.sqrt(((x - fc[0]) / (0.95 * k)) ** 2 + ((y - fc[1]) / (1.3 * k)) ** 2)
        face_mask = np.clip((1 - d) * 1.3 * k * size, 0, 1)[..., None]
        shade = (1.05 - 0.25 * np.clip(((x - fc[0]) - (y - fc[1])) / (1.5 * k), -1, 1))[..., None]
        img = img * (1 - face_mask) + skin * shade * face_mask
        for side in (-0.5, 0.5):  # eyes and brows
            e = to_px(np.array([side, 0.0]))
            cv2.ellipse(img, (int(e[0]), int(e[1])), (max(1, int(0.16 * k * size)), max(1, int(0.06 * k * size))),
                        -roll[t], 0, 360, (0.1, 0.08, 0.08), -1, cv2.LINE_AA)
            b = to_px(np.array([side, 0.22]))
            cv2.ellipse(img, (int(b[0]), int(b[1])), (max(1, int(0.2 * k * size)), max(1, int(0.03 * k * size))),
                        -roll[t], 0, 360, tuple(float(c) for c in skin * 0.45), -1, cv2.LINE_AA)
        nose = to_px(np.array([0.0, -0.45]))
        cv2.ellipse(img, (int(nose[0]), int(nose[1])), (max(1, int(0.1 * k * size)), max(1, int(0.07 * k * size))),
                    -roll[t], 0, 360, tuple(float(c) for c in skin * 0.75), -1, cv2.LINE_AA)
        # Mouth from the contour.
        pts = lips[t, :, :2] - centre_lips + np.array([0.0, -0.9])
        protrude = float(lips[t, :20, 2].mean() - lips[:, :20, 2].mean())
        img = draw_mouth(img, to_px(pts[:20]), to_px(pts[20:]), colours, protrude, roll[t])
        frames[t] = img
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def h264(frames: np.ndarray, crf: int = 28, fps: int = 25) -> np.ndarray:
    """``frames (n, H, W, 3)`` uint8 through an in-memory H.264 (libx264, yuv420p) encode and decode."""
    import av

    h, w = frames.shape[1:3]
    even = frames[:, :h - h % 2, :w - w % 2]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = even.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        for image in even:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    out = frames.copy()
    out[:, :even.shape[1], :even.shape[2]] = decoded[:len(frames)]
    return out


def corrupt_video(frames: np.ndarray, rng: np.random.Generator, codec: bool = True) -> tuple[np.ndarray, dict]:
    """Light, blur, noise and (``codec``) an H.264 re-encode, each drawn at random; returns the frames
    and what was applied."""
    import cv2

    n = len(frames)
    x = frames.astype(np.float32) / 255.0
    gain = rng.uniform(0.6, 1.3)
    gamma = rng.uniform(0.7, 1.4)
    cast = rng.uniform(0.85, 1.15, 3)
    flicker = 1 + rng.uniform(0, 0.06) * np.sin(np.arange(n) * rng.uniform(0.05, 0.5))
    x = np.clip(x * gain * cast * flicker[:, None, None, None], 0, 1) ** gamma
    sigma = float(rng.choice([0.0, rng.uniform(0.3, 1.8)]))
    if sigma > 0:
        x = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in x])
    noise = float(rng.uniform(0, 0.04))
    x = x + rng.standard_normal(x.shape).astype(np.float32) * noise
    out = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    crf = int(rng.integers(20, 41)) if codec else None
    if crf is not None:
        out = h264(out, crf)
    return out, {"gain": round(gain, 3), "gamma": round(gamma, 3), "blur_sigma": round(sigma, 3),
                 "noise_std": round(noise, 4), "h264_crf": crf}
