"""Active speaker detection: turns from scores, accuracy on synthetic two-face clips with the
shipped weights, and `syncopt sync --json/--render` output."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest

from mediautil import write_video
from syncopt.data.synth import SynthConfig, make_clip, split_seed
from syncopt.inference.speakers import active_speaker, conversation, frame_accuracy, frame_scores, turn_iou
from syncopt.inference.sync import score_faces
from syncopt.models.sources import resolve

# Stated bars (benchmarks/results/speaker.json has the full figures on 40 clips per set).
TWO_FACE_ACCURACY = 0.8
CONVERSATION_ACCURACY = 0.9
CONVERSATION_IOU = 0.8


def test_turns_from_scores():
    scores = np.full((2, 40), -1.0)
    scores[0, :18] = 3.0
    scores[1, 18:30] = 3.0
    scores[0, 22:24] = 5.0  # a 2-frame blip inside track 1's turn: merged away
    timeline = active_speaker(scores, fps=25.0, threshold=0.5, min_frames=5)
    assert [(t.track, t.start_frame, t.end_frame) for t in timeline.turns] == [(0, 0, 18), (1, 18, 30)]
    assert timeline.per_frame[30:] == [None] * 10 and timeline.turns[1].end_s == pytest.approx(1.2)
    truth = np.array([0] * 18 + [1] * 12 + [-1] * 10)
    assert frame_accuracy(timeline.per_frame, truth) == 1.0 and turn_iou(timeline.per_frame, truth) == 1.0
    assert frame_accuracy(active_speaker(scores - 10, 25.0).per_frame, truth) == 0.25  # nobody above threshold


@pytest.fixture(scope="module")
def fcn():
    return resolve("fcn", "tiny", None, shipped=True).build()


@pytest.mark.slow
def test_speaking_face_identified_on_two_face_clips(fcn):
    accuracies = []
    for i in range(6):
        clip = make_clip(split_seed("test", 2000 + i), SynthConfig(num_frames=75), kind="two_face")
        tracks = score_faces(fcn, list(clip.faces), clip.audio)
        timeline = active_speaker(frame_scores(tracks, 75), 25.0)
        accuracies.append(frame_accuracy(timeline.per_frame, np.full(75, clip.speaker)))
        swapped = active_speaker(frame_scores(tracks[::-1], 75), 25.0)  # the answer follows the face
        assert frame_accuracy(swapped.per_frame, np.full(75, 1 - clip.speaker)) == accuracies[-1]
    assert np.mean(accuracies) >= TWO_FACE_ACCURACY


@pytest.mark.slow
def test_turns_found_in_conversations(fcn):
    accuracies, ious = [], []
    for i in range(3):
        faces, audio, truth = conversation(split_seed("test", 3000 + i), 150, turns=2 + i)
        timeline = active_speaker(frame_scores(score_faces(fcn, list(faces), audio), 150), 25.0)
        accuracies.append(frame_accuracy(timeline.per_frame, truth))
        ious.append(turn_iou(timeline.per_frame, truth))
    assert np.mean(accuracies) >= CONVERSATION_ACCURACY and np.mean(ious) >= CONVERSATION_IOU


@pytest.mark.slow
def test_sync_json_has_speakers_and_render_writes_video(tmp_path):
    clip = make_clip(21, SynthConfig(num_frames=40, crop_size=64))
    video = write_video(tmp_path / "face.avi", clip.frames, clip.audio)
    out = tmp_path / "annotated.mp4"
    res = subprocess.run([sys.executable, "-m", "syncopt", "sync", str(video), "--model", "fcn", "--crop", "full",
                          "--json", "--render", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    [result] = json.loads(res.stdout)
    speakers = result["speakers"]
    assert len(speakers["per_frame"]) == result["frames"] == 40
    assert all(p in (0, None) for p in speakers["per_frame"]) and "frame_boxes" not in result["tracks"][0]
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 40
    assert np.abs(frames[5].astype(int) - clip.frames[5].astype(int)).max() > 100  # a box was drawn
    bad = subprocess.run([sys.executable, "-m", "syncopt", "sync", str(video), "--model", "fcn", "--crop", "full", "--render",
                          str(tmp_path / "x.gif")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --render wants") and "Traceback" not in bad.stderr
