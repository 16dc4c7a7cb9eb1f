"""Sync-inconsistency segments and score: on constructed per-frame offsets and on synthetic
cut-in / constant clips with the shipped weights."""

from __future__ import annotations

import numpy as np
import pytest

from syncopt.data.synth import SynthConfig, make_clip, split_seed
from syncopt.models.decode import SyncResult, median_smooth
from syncopt.inference.inconsistency import find_inconsistency, inconsistent_frames, judged_frames, temporal_iou
from syncopt.inference.sync import score_faces
from syncopt.models.sources import resolve


def _result(per_frame: list[int], offset: int) -> SyncResult:
    n = len(per_frame)
    return SyncResult(offset=offset, confidence=1.0, max_offset=15, offset_scores=[0.0] * 31,
                      per_frame_offset=per_frame, per_frame_confidence=[0.0] * n)


@pytest.mark.parametrize("n", [1, 2, 8, 9, 40])
def test_median_smooth_is_scipy_medfilt(n):
    """The numpy running median gives scipy.signal.medfilt's answer (zeros beyond the ends), kernel 9
    shrunk to the largest odd length for clips shorter than it."""
    from scipy import signal

    values = np.random.default_rng(n).integers(-15, 16, n).astype(float)
    kernel = min(9, n if n % 2 else n - 1)
    np.testing.assert_array_equal(median_smooth(values), signal.medfilt(values, kernel_size=kernel))


def test_box_smoothing_is_scipy_median_filter():
    """Face boxes are median-filtered over 13 frames with the ends repeated, as scipy.ndimage's
    ``median_filter(mode="nearest")`` does (the filter the box smoothing used before)."""
    from scipy.ndimage import median_filter

    from syncopt.data.faces import smooth_boxes

    corners = np.random.default_rng(1).uniform(0, 100, (30, 2))
    boxes = np.concatenate([corners, corners + np.random.default_rng(2).uniform(20, 40, (30, 2))], axis=1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    np.testing.assert_allclose((smooth_boxes(boxes)[:, :2] + smooth_boxes(boxes)[:, 2:]) / 2,
                               median_filter(centre, size=(13, 1), mode="nearest"), atol=1e-4)


def test_segments_from_per_frame_offsets():
    per_frame = [2] * 60
    per_frame[20:35] = [9] * 15  # a cut-in at +9
    per_frame[45:47] = [-5, -5]  # a 2-frame glitch: filtered out
    found = find_inconsistency(_result(per_frame, 2), fps=25.0, start_frame=10)
    [seg] = found.segments
    assert (seg.start_frame, seg.end_frame, seg.offset) == (30, 45, 9) and seg.start_s == pytest.approx(1.2)
    assert found.score == pytest.approx(15 / judged_frames(60, 2).sum())
    assert find_inconsistency(_result([2] * 60, 2), 25.0).score == 0.0
    assert not inconsistent_frames(_result([3] * 30 + [2] * 30, 2)).any()  # within the 1-frame tolerance
    assert temporal_iou(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)) == pytest.approx(1 / 3)


@pytest.mark.slow
def test_cut_ins_score_above_constant_clips():
    model = resolve("fcn", "tiny", None, shipped=True).build()
    consistent, inconsistent, ious = [], [], []
    for i in range(4):
        for kind in ("constant", "cutin"):
            clip = make_clip(split_seed("test", 7000 + i), SynthConfig(num_frames=100), kind=kind)
            [track] = score_faces(model, [clip.frames], clip.audio)
            found = find_inconsistency(track.result, 25.0)
            (inconsistent if kind == "cutin" else consistent).append(found.score)
            if kind == "cutin":
                mask = clip.per_frame_valid & judged_frames(100, track.result.offset)
                truth = (np.abs(clip.per_frame_offset - clip.offset) > 1) & mask
                ious.append(temporal_iou(inconsistent_frames(track.result) & mask, truth))
    assert min(inconsistent) > max(consistent)
    assert np.mean(ious) >= 0.6


@pytest.mark.slow
def test_drift_segments_found_against_the_decoded_offset():
    """On drifting clips the segments cover the frames whose true offset departs from the decoded
    clip offset (the label's majority offset of a ramp is a near-tie, see bench_inconsistency)."""
    model = resolve("fcn", "tiny", None, shipped=True).build()
    ious, scores = [], []
    for i in range(4):
        clip = make_clip(split_seed("test", 7100 + i), SynthConfig(num_frames=100), kind="drift")
        [track] = score_faces(model, [clip.frames], clip.audio)
        mask = clip.per_frame_valid & judged_frames(100, track.result.offset)
        truth = (np.abs(clip.per_frame_offset - track.result.offset) > 1) & mask
        ious.append(temporal_iou(inconsistent_frames(track.result) & mask, truth))
        scores.append(find_inconsistency(track.result, 25.0).score)
    assert np.mean(ious) >= 0.6 and min(scores) > 0
