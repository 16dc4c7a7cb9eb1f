"""BlazeFace decoding, the face mesh tracker, lip geometry and landmark-aligned crops, on real GRID clips."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from syncopt.data import blazeface, faces, litert
from syncopt.core.errors import BackendUnavailable, MediaError

FIXTURES = Path(__file__).parent / "fixtures"
GRID = [FIXTURES / "grid_brbk7n.mpg", FIXTURES / "grid_sbwe5n.mpg"]
pytestmark = pytest.mark.skipif(not litert.runtime_available(), reason="ai-edge-litert is not installed")


def decoded(path: Path) -> np.ndarray:
    from syncopt.data.media import FrameSource

    return np.stack(list(FrameSource(path)))


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {p.name: decoded(p) for p in GRID}


@pytest.fixture(scope="module")
def tracks(clips):
    from syncopt.data.landmarks import track_landmarks

    return {name: track_landmarks(frames) for name, frames in clips.items()}


# -- BlazeFace post-processing -------------------------------------------------------------------

def test_anchors_match_the_model_outputs():
    model = litert.shared_model(blazeface.MODEL_FILE)
    out = model(np.zeros(model.input_shape, np.float32))
    assert out["regressors"].shape == (1, len(blazeface.ANCHORS), 16) == (1, 896, 16)
    # stride 8: a 16x16 grid, 2 anchors a cell, then stride 16 (three layers pooled): 8x8, 6 a cell
    np.testing.assert_allclose(blazeface.ANCHORS[[0, 1, 2]], [[1 / 32, 1 / 32]] * 2 + [[3 / 32, 1 / 32]])
    np.testing.assert_allclose(blazeface.ANCHORS[512:518], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(blazeface.ANCHORS[-1], [15 / 16, 15 / 16])


def test_decode_offsets_boxes_and_keypoints_from_anchors():
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    regressors[600] = [12.8, -6.4, 32, 64, *([6.4, 12.8] * 6)]  # in input pixels (128)
    logits[600] = 2.0
    [det] = blazeface.decode(regressors, logits)
    cx, cy = blazeface.ANCHORS[600] + [0.1, -0.05]
    np.testing.assert_allclose(det[:4], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25], atol=1e-6)
    assert det[4] == pytest.approx(1 / (1 + np.exp(-2.0)))
    np.testing.assert_allclose(det[5:7], blazeface.ANCHORS[600] + [0.05, 0.1], atol=1e-6)


def test_weighted_nms_merges_overlaps_by_score():
    rows = np.zeros((3, blazeface.DETECTION_COLUMNS), np.float32)
    rows[0, :5] = [0, 0, 10, 10, 0.9]
    rows[1, :5] = [2, 0, 12, 10, 0.6]  # IoU 0.67 with the first
    rows[2, :5] = [50, 50, 60, 60, 0.7]
    rows[:, 5] = [1, 4, 9]
    merged = blazeface.weighted_nms(rows)
    assert len(merged) == 2 and list(merged[:, 4]) == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(merged[0, :4], [0.8, 0, 10.8, 10], atol=1e-5)  # (0.9*0 + 0.6*2) / 1.5
    assert merged[0, 5] == pytest.approx((0.9 * 1 + 0.6 * 4) / 1.5)


def test_small_face_in_a_large_frame_is_found_by_tiles(clips):
    frame = clips["grid_brbk7n.mpg"][10]
    canvas = np.zeros((1440, 1440, 3), np.uint8)  # the face 1/12 of the side: too small letterboxed
    canvas[900:1188, 200:560] = frame
    [det] = blazeface.BlazeFace()(canvas)
    [full] = blazeface.BlazeFace()(frame)
    assert faces.iou(det[None, :4] - [200, 900, 200, 900], full[None, :4])[0, 0] > 0.8


# -- tracks on real clips ----------------------------------------------------------------------------

def test_face_mesh_on_every_frame(clips, tracks):
    for name, frames in clips.items():
        [track] = tracks[name]
        assert (track.start, track.end) == (0, len(frames)) and track.points.shape == (len(frames), 468, 3)
        assert track.scores.min() > 0.5  # the mesh saw the face on every frame: nothing interpolated
        x1, y1, x2, y2 = np.median(track.boxes, axis=0)
        assert 80 < x2 - x1 < 200 and 90 < (x1 + x2) / 2 < 270 and 60 < (y1 + y2) / 2 < 250


def stable_point_accel(track) -> float:
    """Mean frame-to-frame acceleration of the points that do not move with speech, in eye-corner distances."""
    from syncopt.data.landmarks import STABLE_POINTS

    xy = track.points[:, list(STABLE_POINTS), :2].astype(np.float64)
    iod = np.linalg.norm(track.points[:, 33, :2] - track.points[:, 263, :2], axis=1).mean()
    return float((np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=2) / iod).mean())


def test_stable_point_jitter_is_small(tracks):
    for [track] in tracks.values():
        # measured 0.003-0.006 of the eye-corner distance on these two clips (about 0.3 px)
        assert stable_point_accel(track) < 0.01


def test_lip_opening_follows_speech(clips, tracks):
    from syncopt.data.landmarks import lip_geometry
    from syncopt.data.media import decode_audio, fit_audio

    for path in GRID:
        frames = clips[path.name]
        audio = fit_audio(decode_audio(path).samples, len(frames))
        energy = np.log10(np.square(audio.reshape(len(frames), -1)).mean(1) + 1e-10)
        speech = energy > energy.min() + 0.5 * np.ptp(energy)
        silence = slice(0, int(np.argmax(speech)) - 3)  # lips move a little before the sound starts
        opening = lip_geometry(tracks[path.name][0].points)[:, 0]
        # measured: 1.5x (brbk7n) and 2.3x (sbwe5n) wider while speaking
        assert opening[speech].mean() > 1.2 * opening[silence].mean()
        motion = np.abs(np.diff(opening))
        assert motion[speech[1:]].mean() > 2 * motion[silence].mean()  # measured 3.4x and 7.9x


def test_lip_geometry_ignores_size_and_rotation(tracks):
    from syncopt.data.landmarks import lip_geometry

    points = tracks["grid_brbk7n.mpg"][0].points[:5].astype(np.float64)
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = 2.5 * points @ rot.T + [300, -40, 0]
    np.testing.assert_allclose(lip_geometry(moved), lip_geometry(points), rtol=1e-5)
    opening, width = lip_geometry(points).T
    assert (0 < opening).all() and (opening < width).all() and (0.3 < width).all() and (width < 0.8).all()


def test_on_timeline_moves_a_30fps_track_to_its_true_times():
    from syncopt.data.landmarks import LandmarkTrack, on_timeline

    times = np.arange(90) / 30  # 3 s at 30 fps; the track covers source frames 6 .. 65 (0.2 s .. 2.167 s)
    x = 100 * times[6:66]  # every point moves at 100 px/s
    points = np.repeat(np.stack([x, -x, 0 * x], 1)[:, None], 468, 1).astype(np.float32)
    n = len(points)
    track = LandmarkTrack(start=6, boxes=np.zeros((n, 4), np.float32), scores=np.ones(n, np.float32), points=points)
    moved = on_timeline(track, times, 25.0, 75)
    assert moved.start == 5 and moved.end == 55  # 25 fps frames within 0.2 .. 2.167 s
    np.testing.assert_allclose(moved.points[:, 0, 0], 100 * np.arange(5, 55) / 25, atol=1e-3)
    np.testing.assert_allclose(moved.points[:, 0, 1], -100 * np.arange(5, 55) / 25, atol=1e-3)
    same = on_timeline(track, np.arange(90) / 25, 25.0, 90)  # a source already at 25 fps: unchanged
    assert same.start == 6
    np.testing.assert_array_equal(same.points, points)
    assert on_timeline(track, times + 10, 25.0, 75) is None  # no timeline frame within the track


def test_two_faces_side_by_side_give_two_tracks(clips):
    from syncopt.data.landmarks import track_landmarks

    left, right = clips["grid_brbk7n.mpg"], clips["grid_sbwe5n.mpg"]
    pair = np.concatenate([left, right], axis=2)  # 720x288, one speaker in each half
    found = track_landmarks(pair)
    assert len(found) == 2 and all((tr.start, tr.end) == (0, len(pair)) for tr in found)
    centres = sorted(float(np.median(tr.boxes[:, [0, 2]])) for tr in found)
    assert centres[0] < 360 < centres[1]


def test_clip_without_a_face_is_one_line_error(tmp_path):
    from mediautil import write_video
    from syncopt.data.landmarks import track_landmarks
    from syncopt.data.media import FrameSource

    noise = np.random.default_rng(3).integers(0, 256, (30, 120, 160, 3), dtype=np.uint8)
    video = write_video(tmp_path / "noise.avi", noise, 0.1 * np.sin(np.arange(30 * 640) / 5.0))
    with pytest.raises(MediaError, match="no face found in noise.avi") as err:
        track_landmarks(FrameSource(video))
    assert "\n" not in str(err.value)
    assert track_landmarks(noise, allow_empty=True) == []


def test_lazy_frames_track_the_same_points(clips, tracks, tmp_path):
    """A lazy FrameSource converts only each face's region to RGB (and whole frames for detection):
    the mesh sees the same pixels, also in a clip stored turned with a display matrix."""
    from mediautil import write_video
    from syncopt.data.landmarks import track_landmarks
    from syncopt.data.media import FrameSource

    def same(lazy: list, eager: list) -> None:
        assert [(t.start, t.end) for t in lazy] == [(t.start, t.end) for t in eager] != []
        for a, b in zip(lazy, eager):
            assert np.abs(a.points - b.points).max() < 0.01  # pixels; measured identical

    name = "grid_brbk7n.mpg"
    same(track_landmarks(FrameSource(FIXTURES / name, lazy=True)), tracks[name])
    stored = np.ascontiguousarray(np.rot90(clips[name][:30], -1, axes=(1, 2)))  # as a phone stores portrait
    turned = write_video(tmp_path / "turned.mp4", stored, None, rotation=90)
    same(track_landmarks(FrameSource(turned, lazy=True)), track_landmarks(FrameSource(turned)))


def test_missing_runtime_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert not litert.runtime_available()
    with pytest.raises(BackendUnavailable, match="ai-edge-litert") as err:
        litert.TFLiteModel(blazeface.MODEL_FILE)
    assert "\n" not in str(err.value)


# -- aligned crops -----------------------------------------------------------------------------------

def _turning(frames: np.ndarray) -> np.ndarray:
    """The clip with the camera rolling +-12 degrees and zooming 0.8-1.2x about the face over time."""
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        phase = 2 * np.pi * t / len(frames)
        m = cv2.getRotationMatrix2D((180, 150), 12 * np.sin(phase), 1 + 0.2 * np.sin(2 * phase))
        out[t] = cv2.warpAffine(frame, m, (360, 288), borderMode=cv2.BORDER_REPLICATE)
    return out


def _in_crop(points: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Mesh points mapped into crop pixels by the inverse of each frame's crop -> frame affine."""
    inv = np.stack([cv2.invertAffineTransform(m) for m in transforms])
    return np.einsum("nij,nkj->nki", inv[:, :, :2], points[..., :2]) + inv[:, None, :, 2]


def test_aligned_crops_cancel_head_roll_and_zoom(clips):
    from syncopt.data.landmarks import REGIONS, STABLE_POINTS, aligned_crops, alignment, track_landmarks

    still = clips["grid_brbk7n.mpg"]
    turning = _turning(still)
    [track] = track_landmarks(turning)
    size = 96
    stable = _in_crop(track.points[:, list(STABLE_POINTS)], alignment(track.points, size))
    raw = track.points[:, list(STABLE_POINTS), :2]
    iod = np.linalg.norm(track.points[:, 33, :2] - track.points[:, 263, :2], axis=1).mean()
    # spread over time in eye-corner distances: measured 0.069 in the frame, 0.006 in the crop (0.33 px)
    assert (raw.std(axis=0) / iod).mean() > 0.04
    assert (stable.std(axis=0) / (size / REGIONS["face"].side)).mean() < 0.015 and stable.std(axis=0).max() < 1
    crops = aligned_crops(turning, track, size)
    [still_track] = track_landmarks(still)
    reference = aligned_crops(still, still_track, size)
    assert crops.shape == (len(still), size, size, 3) and crops.dtype == np.uint8
    inner = slice(12, -12)  # the rotated frame's replicated border may show at the crop's edge
    diff = np.abs(crops[:, inner, inner].astype(int) - reference[:, inner, inner]).mean()
    # grey levels: measured 3.5 between the aligned crops, 24 between the frames' face areas
    assert diff < 6
    assert np.abs(turning[:, 60:240, 90:270].astype(int) - still[:, 60:240, 90:270]).mean() > 3 * diff


def test_mouth_region_is_centred_on_the_mouth(clips, tracks):
    from syncopt.data.landmarks import MOUTH_CORNERS, alignment

    track = tracks["grid_sbwe5n.mpg"][0]
    corners = _in_crop(track.points[:, list(MOUTH_CORNERS)], alignment(track.points, 64, region="mouth"))
    centre = corners.mean(axis=1)
    np.testing.assert_allclose(centre.mean(0), [32, 32], atol=3)
    width = np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1)
    assert 25 < width.mean() < 50  # the mouth spans about 0.56 of the 1-unit square


def test_one_pass_crops_equal_two_pass_crops_across_gaps(clips):
    from syncopt.data.landmarks import aligned_crops, track_and_crop

    frames = clips["grid_sbwe5n.mpg"].copy()
    frames[30:35] = 0  # the face vanishes for 5 frames (up to max_gap = 10): interpolated
    [(track, crops)] = track_and_crop(frames, 64)
    assert (track.start, track.end) == (0, 75) and (track.scores[30:35] == 0).all()
    assert (track.scores[:30] > 0.5).all() and (track.scores[35:] > 0.5).all()
    reference = aligned_crops(frames, track, 64)
    assert np.abs(crops.astype(int) - reference).max() <= 1  # interpolated in float64 vs the track's float32
    frames[30:50] = 0  # longer than max_gap: two tracks, the second from the next detection (every 5 frames)
    assert [(tr.start, tr.end) for tr, _ in track_and_crop(frames, 64)] == [(0, 30), (50, 75)]


def test_row_blocks_across_block_edges():
    from syncopt.data.landmarks import _Rows

    rows, data = _Rows(block=4), np.arange(30, dtype=np.float32).reshape(10, 3)
    for row in data:
        rows.append(row)
    rows.pop()
    rows.pop()  # back to 8 rows: exactly two full blocks
    assert len(rows) == 8 and len(rows.blocks) == 2 and (rows.last() == data[7]).all()
    rows.append(data[8])
    np.testing.assert_array_equal(rows.rows(2, 9), data[[2, 3, 4, 5, 6, 7, 8]])
    np.testing.assert_array_equal(rows.take(), data[:9])
    np.testing.assert_array_equal(rows.rows(3, 6), data[3:6])  # still readable after take


@pytest.mark.slow  # building the model for its spec imports torch and every model (~7 s)
def test_face_crops_use_landmarks_and_fall_back_to_haar(monkeypatch, clips):
    from syncopt.data.landmarks import LandmarkTrack
    from syncopt.models.registry import create

    spec = create("fcn", "tiny").spec
    frames = clips["grid_brbk7n.mpg"]
    [(track, crops)] = faces.face_crops(frames, "detect", spec)
    size = spec.preprocessing.crop_size
    assert isinstance(track, LandmarkTrack) and crops.shape == (len(frames), size, size, 3)
    if faces.detector_available():
        monkeypatch.setattr(litert, "runtime_available", lambda: False)
        [(haar, _)] = faces.face_crops(frames[:20], "detect", spec)  # Haar: ~50 ms a frame
        assert type(haar) is faces.FaceTrack


def test_followed_region_moves_part_way_and_takes_jumps():
    from syncopt.data.facemesh import ROI_JUMP, Roi, follow_roi

    before = Roi(100.0, 100.0, 80.0, 0.1)
    step = follow_roi(before, Roi(104.0, 98.0, 88.0, -0.1), weight=0.5)
    assert (step.cx, step.cy) == pytest.approx((102.0, 99.0))
    assert step.side == pytest.approx((80.0 * 88.0) ** 0.5) and step.angle == pytest.approx(0.0)
    across = follow_roi(Roi(0.0, 0.0, 80.0, 3.1), Roi(0.0, 0.0, 80.0, -3.1), weight=0.5)
    assert abs(abs(across.angle) - np.pi) < 0.01  # the short way round, not through 0
    jump = Roi(100.0 + 1.1 * ROI_JUMP * 80.0, 100.0, 80.0, 0.1)
    assert follow_roi(before, jump) == jump and follow_roi(None, jump) == jump


def test_following_the_region_steadies_the_points(monkeypatch, clips, tracks):
    from syncopt.data import facemesh, landmarks
    from syncopt.data.landmarks import track_landmarks

    monkeypatch.setattr(landmarks, "follow_roi", lambda previous, current: facemesh.follow_roi(previous, current, 1.0))
    redrawn = [stable_point_accel(track_landmarks(frames)[0]) for frames in clips.values()]
    followed = [stable_point_accel(tracks[name][0]) for name in clips]
    # measured: 0.0041 / 0.0043 of the eye-corner distance followed, 0.0043 / 0.0048 redrawn every frame
    assert all(f < r for f, r in zip(followed, redrawn)), (followed, redrawn)
