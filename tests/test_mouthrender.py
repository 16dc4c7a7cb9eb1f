"""The lip model's mouth in pixels (syncopt.data.mouthrender, SynthConfig(mouth="contour")) and the video
corruptions: the cavity grows with the opening, teeth show when open, H.264 keeps the picture."""

from __future__ import annotations

import numpy as np

from syncopt.data import lipmodel, mouthrender, synth


def _changed(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pixels per frame that differ visibly from ``reference`` (a closed mouth on the same still face)."""
    return (np.abs(frames.astype(int) - reference.astype(int)).max(-1) > 30).sum((1, 2))


def _teeth(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32) / 255
    return ((f.min(-1) > 0.6) & (np.ptp(f, axis=-1) < 0.2)).sum((1, 2))


def test_cavity_and_teeth_follow_the_opening():
    params = np.zeros((5, 4))
    params[:, 0] = [0.0, 0.25, 0.5, 0.75, 1.0]
    lips = lipmodel.deform(params, lipmodel.Face())
    frames = mouthrender.render_face(lips, 128, np.random.default_rng(0))
    assert frames.shape == (5, 128, 128, 3) and frames.dtype == np.uint8
    changed = _changed(frames, frames[0])
    assert np.all(np.diff(changed) > 0), changed  # the open mouth grows with the opening
    teeth = _teeth(frames)
    assert teeth[-1] > teeth[0] + 10, teeth  # teeth show in an open mouth


def test_h264_round_trip_keeps_the_picture_and_loses_detail():
    rng = np.random.default_rng(1)
    lips = lipmodel.deform(np.full((12, 4), 0.3) * [1, 0, 0, 0], lipmodel.Face())
    frames = mouthrender.render_face(lips, 96, rng)
    noisy = np.clip(frames + rng.normal(0, 12, frames.shape), 0, 255).astype(np.uint8)
    coded = mouthrender.h264(noisy, crf=30)
    assert coded.shape == noisy.shape and coded.dtype == np.uint8
    mse = np.mean((coded.astype(float) - frames.astype(float)) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 25  # the picture survives ...
    assert np.mean(np.abs(coded.astype(float) - noisy.astype(float))) > 2  # ... the sensor noise does not
    out, info = mouthrender.corrupt_video(frames, np.random.default_rng(2))
    assert out.shape == frames.shape and info["h264_crf"] is not None and 20 <= info["h264_crf"] <= 40


def test_synth_contour_mouth_opens_with_the_speech():
    clip = synth.make_clip(7, synth.SynthConfig(crop_size=64, mouth="contour", distractors=False, motion=0.0))
    changed = _changed(clip.frames, clip.frames[int(np.argmin(clip.mouth_opening))])
    r = np.corrcoef(changed, clip.mouth_opening)[0, 1]
    assert r > 0.7, r
    default = synth.make_clip(7, synth.SynthConfig(crop_size=64))
    assert np.array_equal(default.frames, synth.make_clip(7, synth.SynthConfig(crop_size=64, mouth="ellipse")).frames)
