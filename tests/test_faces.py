"""Face tracking with injected detectors, square crops, and the Haar detector on the real clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from syncopt.data import faces
from syncopt.core.errors import InputFileError

CLIP = Path(__file__).parent / "fixtures" / "example.avi"
needs_detector = pytest.mark.skipif(not faces.detector_available(),
                                    reason="this OpenCV has no Haar face cascade (OpenCV 5 moved it to contrib)")


def indexed_frames(num: int, size: int = 200) -> np.ndarray:
    """Black frames whose top-left pixel holds the frame index, for fake detectors."""
    frames = np.zeros((num, size, size, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(num)
    return frames


def fake_detector(boxes_at):
    """A detector returning ``boxes_at(t)`` (list of x1,y1,x2,y2) for frame ``t`` with score 0.9."""
    def detect(frame: np.ndarray) -> np.ndarray:
        boxes = boxes_at(int(frame[0, 0, 0]))
        return np.array([[*b, 0.9] for b in boxes], np.float32).reshape(-1, 5)
    return detect


def moving(t: int, x0: float, y0: float, side: float = 40) -> list[float]:
    return [x0 + 2 * t, y0 + t, x0 + 2 * t + side, y0 + t + side]


def test_two_moving_faces_give_two_tracks():
    detector = fake_detector(lambda t: [moving(t, 10, 10)] + ([moving(t, 10, 120)] if 5 <= t < 30 else []))
    tracks = faces.track_faces(indexed_frames(40), detector=detector)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 40), (5, 30)]
    np.testing.assert_allclose(tracks[0].boxes[17], moving(17, 10, 10), atol=1e-4)
    np.testing.assert_allclose(tracks[1].boxes[0], moving(5, 10, 120), atol=1e-4)
    assert tracks[0].boxes.dtype == np.float32 and tracks[0].scores.shape == (40,)


def test_missed_frames_are_interpolated():
    detector = fake_detector(lambda t: [] if t in (18, 19, 20) else [moving(t, 10, 10)])
    tracks = faces.track_faces(indexed_frames(40), detector=detector)
    assert len(tracks) == 1 and (tracks[0].start, tracks[0].end) == (0, 40)
    np.testing.assert_allclose(tracks[0].boxes[19], moving(19, 10, 10), atol=1e-4)
    np.testing.assert_allclose(tracks[0].scores[17:22], [0.9, 1.0, 1.0, 1.0, 0.9])


def test_gap_longer_than_max_gap_splits_track():
    detector = fake_detector(lambda t: [] if 15 <= t < 25 else [moving(t, 10, 10)])
    tracks = faces.track_faces(indexed_frames(40), max_gap=5, detector=detector)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 15), (25, 40)]


def test_short_track_dropped():
    detector = fake_detector(lambda t: [[50, 50, 90, 90]] if 10 <= t < 16 else [])
    assert faces.track_faces(indexed_frames(40), min_track=10, detector=detector) == []
    assert len(faces.track_faces(indexed_frames(40), min_track=5, detector=detector)) == 1


def test_jump_starts_new_track():
    detector = fake_detector(lambda t: [[10, 10, 60, 60]] if t < 20 else [[130, 130, 180, 180]])
    tracks = faces.track_faces(indexed_frames(40), detector=detector)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 20), (20, 40)]
    np.testing.assert_allclose(tracks[1].boxes[0], [130, 130, 180, 180])


def test_detect_every_interpolates_between_runs():
    calls = []
    detector = fake_detector(lambda t: calls.append(t) or [moving(t, 10, 10)])
    tracks = faces.track_faces(indexed_frames(40), detect_every=3, detector=detector)
    assert calls == list(range(0, 40, 3))
    assert (tracks[0].start, tracks[0].end) == (0, 40)
    np.testing.assert_allclose(tracks[0].boxes[20], moving(20, 10, 10), atol=1e-4)


def test_crop_centres_on_box():
    frame = np.zeros((1, 240, 320, 3), np.uint8)
    frame[0, 100:160, 150:210] = (255, 0, 0)
    track = faces.FaceTrack(start=0, boxes=np.array([[150, 100, 210, 160]], np.float32), scores=np.ones(1, np.float32))
    crop = faces.crop_track(frame, track, crop_size=112)
    assert crop.shape == (1, 112, 112, 3) and crop.dtype == np.uint8
    assert tuple(crop[0, 56, 56]) == (255, 0, 0)
    # 60 px box, side 84 px: the red square fills 60/84 of the crop, its border is black.
    red = (crop[0, :, :, 0] > 128) & (crop[0, :, :, 2] < 64)
    assert abs(red.mean() - (60 / 84) ** 2) < 0.03
    assert crop[0, 2, 2].max() == 0


def test_crop_at_frame_edge_is_padded():
    frames = np.full((2, 100, 100, 3), 200, np.uint8)
    track = faces.FaceTrack(start=1, boxes=np.array([[0, 0, 50, 50]], np.float32), scores=np.ones(1, np.float32))
    crop = faces.crop_track(frames, track, crop_size=64)
    assert crop.shape == (1, 64, 64, 3)
    assert crop[0, 0, 0].max() == 0 and crop[0, 63, 63].min() == 200


def test_whole_frame_track_crop_is_resize():
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    track = faces.whole_frame_track(3, 48, 48)
    assert (track.start, track.end) == (0, 3)
    np.testing.assert_array_equal(faces.crop_track(frames, track, 48, margin=0.0), frames)


def test_missing_cascade_is_one_line_error(monkeypatch):
    faces._face_cascade.cache_clear()
    monkeypatch.setattr(faces, "_CASCADE_DIRS", ())
    with pytest.raises(InputFileError, match="Haar face cascade") as err:
        faces.detect_faces(np.zeros((64, 64, 3), np.uint8))
    assert "\n" not in str(err.value)
    assert not faces.detector_available()
    monkeypatch.undo()
    faces._face_cascade.cache_clear()


@needs_detector
def test_detects_face_in_real_clip():
    import av

    with av.open(str(CLIP)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(30), container.decode(video=0))])
    found = [len(faces.detect_faces(f)) for f in frames[:20]]
    # Observed: a face in 316 of the 317 frames, one box per frame.
    assert sum(n == 1 for n in found) >= 18
    tracks = faces.track_faces(frames)
    assert len(tracks) >= 1 and (tracks[0].start, tracks[0].end) == (0, 30)
    x1, y1, x2, y2 = tracks[0].boxes.mean(0)
    assert 80 < x2 - x1 < 224 and 20 < (x1 + x2) / 2 < 200 and 20 < (y1 + y2) / 2 < 200


@needs_detector
def test_no_face_in_noise_or_flat_frames():
    noise = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    for frame in (noise, np.full((224, 224, 3), 128, np.uint8)):
        dets = faces.detect_faces(frame)
        assert dets.shape == (0, 5) and dets.dtype == np.float32
