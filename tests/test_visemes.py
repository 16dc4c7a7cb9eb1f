"""Visemes with coarticulation and anticipation (syncopt.data.visemes) and the 3-D lip model filmed into
the fcn_lips feature layout (syncopt.data.lipmodel)."""

from __future__ import annotations

import numpy as np
import pytest

from syncopt.data import lipmodel, visemes
from syncopt.data.lipfeatures import LIP_CHANNELS, lip_motion

T = np.arange(0, 2.0, 0.005)


def _one(phone: str, onset: float = 1.0, length: float = 0.25, art=None) -> np.ndarray:
    phones = ["pau", phone, "pau"]
    starts, ends = np.array([0.0, onset, onset + length]), np.array([onset, onset + length, 2.0])
    return visemes.trajectories(phones, starts, ends, T, art)


def test_every_cmu_phone_has_a_viseme_and_targets_are_in_range():
    for phone, classes in visemes.PHONE_VISEMES.items():
        for c in classes:
            target, alpha, theta = visemes.VISEMES[c]
            assert len(target) == len(visemes.PARAMS) and alpha > 0 and theta > 0, phone
            assert 0 <= target[0] <= 1 and -1 <= target[1] <= 1 and 0 <= target[2] <= 1 and 0 <= target[3] <= 1


@pytest.mark.parametrize("phone,param", [("uw", 2), ("w", 2), ("aa", 0), ("f", 3)])
def test_lips_move_before_the_sound_and_release_faster(phone, param):
    x = _one(phone)[:, param]
    rest = x[T < 0.3].mean()
    peak = x.max() - rest
    assert peak > 0.3
    before = x[np.searchsorted(T, 1.0 - 0.1)] - rest  # 100 ms before the acoustic onset
    assert before > 0.25 * peak  # the gesture is well under way before the sound starts
    after = x[np.searchsorted(T, 1.25 + 0.1)] - rest  # 100 ms after the acoustic offset
    assert after < 0.8 * before  # anticipation reaches further than carry-over (a symmetric model: equal)
    assert T[np.argmax(x)] < 1.0 + 0.25  # the target is reached within the phone


def test_lead_moves_the_gesture_earlier():
    slow = _one("uw", art=visemes.Articulation(lead=0.0))[:, 2]
    early = _one("uw", art=visemes.Articulation(lead=0.08))[:, 2]
    crossing = [T[np.argmax(x > 0.5 * x.max())] for x in (slow, early)]
    assert crossing[1] < crossing[0] - 0.05


def test_bilabials_close_between_open_vowels():
    phones = ["pau", "aa", "m", "aa", "pau"]
    ends = np.array([0.3, 0.5, 0.57, 0.8, 1.2])
    starts = np.concatenate([[0.0], ends[:-1]])
    x = visemes.trajectories(phones, starts, ends, T[T < 1.2])[:, 0]
    t = T[T < 1.2]
    closure = x[(t > 0.5) & (t < 0.57)].min()
    assert closure < 0.25 * x[(t > 0.35) & (t < 0.45)].max()


def test_filmed_lips_are_in_the_feature_layout_and_pose_free():
    params = _one("uw")[::8]  # 40 Hz is enough here
    params[:, 0] += 0.5 * (np.sin(np.arange(len(params)) / 3) > 0)  # some opening too
    quiet = lipmodel.Face(noise_px=0.0, drift_px=0.0, head_motion=0.0)
    lips = lipmodel.deform(params, quiet)
    assert lips.shape == (len(params), 40, 3)
    shapes = []
    for yaw, pitch, motion in ((0, 0, 0), (25, -10, 6), (-20, 8, 6)):
        face = lipmodel.Face(noise_px=0.0, drift_px=0.0, yaw=yaw, pitch=pitch, head_motion=motion, face_px=40)
        mesh, shape = lipmodel.film(lips, face, np.random.default_rng(1))
        assert mesh.shape == (len(params), 468, 3) and shape.shape == (len(params), 40, 3)
        shapes.append(lip_motion(shape))
    assert shapes[0].shape == (LIP_CHANNELS, len(params))
    for other in shapes[1:]:  # head pose and motion are removed by the real pipeline's pose fit
        assert np.corrcoef(shapes[0].ravel(), other.ravel())[0, 1] > 0.98
    # Rounding narrows the mouth and pushes the lips forward (x width down, z up); opening lowers the lower lip.
    width = lips[:, 10, 0] - lips[:, 0, 0]
    i = int(np.argmax(params[:, 2]))
    assert width[i] < width[0] and lips[i, 15, 2] > lips[0, 15, 2]
    opened = int(np.argmax(params[:, 0]))
    assert lips[opened, 25, 1] < lips[0, 25, 1] - 0.05


def test_landmark_noise_and_small_faces_blur_the_motion():
    rng = np.random.default_rng(2)
    params = np.zeros((100, 4))
    params[:, 0] = 0.4 * (1 + np.sin(np.arange(100) / 4))
    lips = lipmodel.deform(params, lipmodel.Face())
    clean = lip_motion(lipmodel.film(lips, lipmodel.Face(noise_px=0, drift_px=0), rng)[1])
    noisy = lip_motion(lipmodel.film(lips, lipmodel.Face(noise_px=0.5, face_px=20), rng)[1])
    r = np.corrcoef(clean.ravel(), noisy.ravel())[0, 1]
    assert 0.2 < r < 0.97
    faces = [lipmodel.random_face(rng) for _ in range(50)]
    assert min(f.face_px for f in faces) < 30 and max(f.face_px for f in faces) > 100
