"""The shipped real-video weights follow known audio shifts on real clips none of them was trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncopt.data.lipcache import load_or_extract
from syncopt.models.sources import DEFAULT_MODEL, resolve, shipped_weights
from syncopt.analysis.shift_eval import model_scorer, valid_range

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lips")


@pytest.fixture(scope="module")
def scorer():
    source = resolve(*DEFAULT_MODEL, None, shipped=True)
    net, _, synthetic = source.build(), str(source.weights), source.synthetic
    assert not synthetic
    return model_scorer(net)


def test_default_weights_record_the_real_clips_they_were_trained_on(cache: Path) -> None:
    weights = shipped_weights(*DEFAULT_MODEL)
    manifest = json.loads(weights.with_suffix(".json").read_text())
    trained = set(manifest["real_clips_sha256"].values())
    assert len(trained) >= 900 and all(len(h) == 64 for h in trained)
    fixtures = {load_or_extract(p, cache).sha256 for p in (FIXTURES / "example.avi", FIXTURES / "grid_sbwe5n.mpg",
                                                    FIXTURES / "grid_brbk7n.mpg")}
    assert not fixtures & trained  # the clips below were never trained on


@pytest.mark.parametrize("k", range(-10, 11))
def test_example_avi_keeps_its_published_offset_at_every_shift(scorer, cache: Path, k: int) -> None:
    clip = load_or_extract(FIXTURES / "example.avi", cache)
    lo, hi = valid_range(clip, k)
    assert abs(scorer(clip, k)(lo, hi) - (3 - k)) <= 1  # SyncNet's published offset for this clip: +3


@pytest.mark.parametrize("name", ["grid_sbwe5n.mpg", "grid_brbk7n.mpg"])
def test_whole_grid_clips_follow_the_shift(scorer, cache: Path, name: str) -> None:
    clip = load_or_extract(FIXTURES / name, cache)
    decided = {k: scorer(clip, k)(*valid_range(clip, k)) for k in (-10, -5, 0, 5, 10)}
    assert all(abs(o + k) <= 1 for k, o in decided.items()), decided


def test_sync_cli_says_what_the_weights_were_trained_on() -> None:
    out = subprocess.run([sys.executable, "-m", "syncopt", "sync", str(FIXTURES / "grid_sbwe5n.mpg")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "weights trained on: real video" in out.stdout
    assert "AV offset +0 frames" in out.stdout or "AV offset -1 frames" in out.stdout or "AV offset +1 frames" in out.stdout


def test_sync_is_sure_of_in_sync_speech_and_unsure_of_someone_else_s(tmp_path: Path) -> None:
    """The 1-s timeline (spec.timeline_frames) makes the offset probability the share of 1-s windows
    that agree: a GRID clip with its own audio scores far above the same video with another speaker's
    sentence, which is flagged, and example.avi is not flagged (before the pooled timeline it was).
    How often right answers and mismatched audio are flagged over many clips is a benchmark
    (benchmarks/bench_uncertainty.py); this 3-s clip, a second of it silence, sits near the 0.4 line."""
    import numpy as np

    from mediautil import write_video
    from syncopt.data.media import FrameSource, decode_audio
    from syncopt.inference.sync import sync_video

    net = resolve(None, shipped=True).build()
    assert net.spec.timeline_frames == 25
    frames = np.stack(list(FrameSource(FIXTURES / "grid_brbk7n.mpg")))
    own, other = (decode_audio(FIXTURES / n).samples for n in ("grid_brbk7n.mpg", "grid_sbwe5n.mpg"))
    n = min(len(own), len(other))
    verdicts = {}
    for name, audio in (("own", own[:n]), ("other", other[:n])):
        write_video(tmp_path / f"{name}.avi", frames, audio)
        [track] = sync_video(tmp_path / f"{name}.avi", net).tracks
        verdicts[name] = (track.offset_frames, track.offset_probability, track.uncertain)
    assert abs(verdicts["own"][0]) <= 1 and verdicts["own"][1] > 0.25, verdicts
    assert verdicts["other"][2] and verdicts["other"][1] < verdicts["own"][1] / 4, verdicts
    [example] = sync_video(FIXTURES / "example.avi", net).tracks
    assert example.offset_frames == 3 and not example.uncertain and len(example.inconsistency.segments) <= 3
