"""Robustness suite: every corruption changes its input (more with severity where measurable),
and accuracy falls with audio noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from syncopt.data.synth import SynthConfig, make_clip
from syncopt.core.errors import UsageError
from syncopt.analysis.robustness import SEVERITIES, corrupt, run_robustness


@pytest.fixture(scope="module")
def clip():
    return make_clip(3, SynthConfig(num_frames=40))


@pytest.mark.parametrize("kind", list(SEVERITIES))
def test_each_corruption_changes_the_input(clip, kind):
    changes = []
    for severity in SEVERITIES[kind]:
        frames, audio = corrupt(kind, severity, clip.frames, clip.audio, seed=1)
        assert frames.shape == clip.frames.shape and frames.dtype == np.uint8 and audio.shape == clip.audio.shape
        change = (np.abs(frames.astype(float) - clip.frames).mean() + np.abs(audio - clip.audio).mean())
        assert change > 0, f"{kind} at {severity} left the clip unchanged"
        changes.append(change)
    if kind in ("noise", "resolution", "blur", "occlusion"):  # deterministic in severity: more is worse
        assert all(b > a for a, b in zip(changes, changes[1:])), changes


def test_unknown_corruption_is_a_usage_error(clip):
    with pytest.raises(UsageError, match="unknown corruption 'rain'"):
        corrupt("rain", 1.0, clip.frames, clip.audio)


@pytest.mark.slow
def test_accuracy_falls_with_audio_noise():
    report = run_robustness(["fcn"], clips=4, frames=50, corruptions=["noise"])
    acc = [c.frame_accuracy for c in report.cells]  # clean, then 20 .. -10 dB
    assert acc[0] > 0.7
    assert acc[-1] < acc[0] - 0.3
    assert all(b <= a + 0.05 for a, b in zip(acc, acc[1:])), acc


@pytest.mark.slow
def test_side_by_side_report_has_a_row_per_model_corruption_and_severity(tmp_path):
    """A model name, the same torch weights given as NAME=WEIGHTS and their fp32 ONNX export on the
    same clips: one cell per model x condition, and all three decide every clip and frame alike."""
    from syncopt.export import export
    from syncopt.models.sources import resolve

    source = resolve("fcn", "tiny", None, shipped=True)
    model, weights, _ = source.build(), str(source.weights), source.synthetic
    artifact = export(model, "onnx", tmp_path)
    kinds = ["noise", "occlusion"]
    report = run_robustness(["fcn", f"fcn={weights}", str(artifact.path)], clips=2, frames=40, corruptions=kinds)
    models = ["fcn", f"fcn ({Path(weights).name})", artifact.path.name]
    keys = [(c.model, c.corruption, c.severity) for c in report.cells]
    expected = {(m, "clean", None) for m in models} | {(m, k, s) for m in models for k in kinds for s in SEVERITIES[k]}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    rows: dict[tuple, set] = {}
    for c in report.cells:
        rows.setdefault((c.corruption, c.severity), set()).add((c.clip_accuracy_pm1, c.frame_accuracy))
    assert all(len(scores) == 1 for scores in rows.values()), rows
    with pytest.raises(UsageError, match="both labelled 'fcn'"):
        run_robustness(["fcn", "fcn"], clips=1, frames=40, corruptions=["noise"])
