"""`syncopt sync`: real clip results, JSON/plot outputs, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mediautil import write_video

EXAMPLE = Path(__file__).parent / "fixtures" / "example.avi"


def run_sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncopt", "sync", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_example_clip_with_shipped_weights(tmp_path):
    plot = tmp_path / "sync.png"
    res = run_sync(str(EXAMPLE), "--json", "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    [video] = json.loads(res.stdout)
    assert video["synthetic_weights"] is False and video["frames"] == 317
    assert video["model"] == "fcn_lips" and video["trained_on"].startswith("real video")
    [track] = video["tracks"]  # one face, found by the detector
    assert track["speaking"] and track["num_frames"] >= 300
    assert abs(track["offset_frames"] - 3) <= 1  # SyncNet's published offset for this clip
    assert track["offset_ms"] == 40.0 * track["offset_frames"]
    result = track["result"]
    assert len(result["per_frame_offset"]) == len(result["per_frame_sync_prob"]) == track["num_frames"]
    assert len(result["offset_scores"]) == 31
    assert max(result["offset_scores"]) == result["offset_scores"][track["offset_frames"] + 15]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    faces = np.zeros((40, 64, 64, 3), np.uint8)
    tone = 0.3 * np.sin(np.arange(40 * 640) / 7.0)
    (d / "notes.txt").write_text("not a video")
    return {
        "missing": d / "absent.mp4",
        "not_media": d / "notes.txt",
        "no_audio": write_video(d / "mute.avi", faces, None),
        "silent": write_video(d / "silent.avi", faces, np.zeros(40 * 640)),
        "too_short": write_video(d / "short.avi", faces[:3], tone[:3 * 640]),
        "no_face": write_video(d / "noface.avi", faces, tone),
    }


@pytest.mark.parametrize("case,code,message", [
    ("missing", 3, "video not found: "),
    ("not_media", 4, "notes.txt is not a readable media file"),
    ("no_audio", 5, "mute.avi has no audio stream"),
    ("silent", 5, "silent.avi: the audio track is silent or constant"),
    ("too_short", 6, "clip of 3 frames is shorter than the model's receptive field of 13 frames"),
    ("no_face", 4, "no face found in noface.avi"),
])
def test_bad_input_is_one_line_with_exit_code(bad_inputs, case, code, message):
    res = run_sync(str(bad_inputs[case]))
    assert res.returncode == code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in res.stderr


GRID = Path(__file__).parent / "fixtures" / "grid_sbwe5n.mpg"


def test_early_meshes_are_the_meshes_sync_would_track():
    """The first video's face meshes, tracked in a thread while torch loads, equal a plain
    tracking's; another video's (or other rates') are not handed out."""
    from syncopt.inference.meshes import EarlyMeshes, mesh_video

    early = EarlyMeshes(GRID)
    assert early.take(EXAMPLE, 25.0, 16000) is None
    assert early.take(GRID, 30.0, 16000) is None
    taken, plain = early.take(GRID, 25.0, 16000), mesh_video(GRID)
    assert taken.source.num_frames == plain.source.num_frames == 75
    assert [len(t.points) for t in taken.tracks] == [len(t.points) for t in plain.tracks] == [75]
    np.testing.assert_array_equal(taken.tracks[0].points, plain.tracks[0].points)
    np.testing.assert_array_equal(taken.samples, plain.samples)


def test_early_meshes_raise_their_error_in_the_taker(bad_inputs):
    from syncopt.core.errors import MediaError
    from syncopt.inference.meshes import EarlyMeshes

    early = EarlyMeshes(bad_inputs["not_media"])
    with pytest.raises(MediaError, match="notes.txt is not a readable media file"):
        early.take(bad_inputs["not_media"], 25.0, 16000)


def test_default_model_answers_as_the_named_one():
    """`sync` without --model tracks faces before the model loads; naming the same model and weights
    goes the plain way: the two answers are identical."""
    early, plain = run_sync(str(GRID), "--json"), run_sync(str(GRID), "--json", "--model", "fcn_lips",
                                                           "--preset", "full")
    assert early.returncode == plain.returncode == 0, early.stderr + plain.stderr
    assert json.loads(early.stdout)[0]["tracks"] == json.loads(plain.stdout)[0]["tracks"]
