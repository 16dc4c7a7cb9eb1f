"""TTS training clips for fcn_lips (syncopt.data.ttsclips): the feature layout, labels that move with the
audio shift, the model-free baseline finding the shift on them, `--data tts:N` and its one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from syncopt.cli import main
from syncopt.data import ttsclips
from syncopt.data.lipfeatures import LIP_CHANNELS
from syncopt.data.signals import lagged_correlation
from syncopt.core.errors import BackendUnavailable, UsageError

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (make tts)")
CLEAN = ttsclips.TTSConfig(voices=("flite_slt", "flite_rms"), snr_db=(30.0, 40.0), reverb=0.0, telephone=0.0,
                           sentences=(3, 3), smiles_per_s=0.0)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCOPT_TTS_CACHE", str(tmp_path / "tts"))


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


@needs_flite
def test_clips_are_deterministic_cached_and_in_the_feature_layout(tmp_path):
    first = ttsclips.make_clip(CLEAN, "val", 3)
    assert (tmp_path / "tts" / CLEAN.digest() / "val_3.npz").is_file()
    again = ttsclips.make_clip(CLEAN, "val", 3, cache=False)  # regenerated: the same clip
    np.testing.assert_allclose(first.lips, again.lips, atol=1e-5)
    np.testing.assert_allclose(first.mfcc, again.mfcc, atol=1e-3)
    assert ttsclips.make_clip(CLEAN, "train", 3, cache=False).meta["texts"] != first.meta["texts"]
    n = first.frames
    assert first.lips.shape == (n, 40, 3) and first.mfcc.shape == (13, 4 * n) and first.energy.shape == (n,)
    assert n > 100 and first.meta["voice"] in CLEAN.voices and len(first.meta["texts"]) == 3
    (item,) = ttsclips.clip_items(first)
    assert item["video"].shape == (LIP_CHANNELS, n) and item["audio"].shape == (1, 13, 4 * n)
    segments = ttsclips.clip_items(first, segment=50)
    assert len(segments) > 1 and sum(s["video"].shape[1] for s in segments) == n


def _lag_curve(item) -> np.ndarray:
    """Model-free: correlation over lags -12..12 of the inner-lip opening's speed (lip-motion channels of
    the inner lip's midline points) with the speed of MFCC c0 (log energy)."""
    v = item["video"].numpy()
    opening = v[3 * 35 + 1] - v[3 * 25 + 1]  # upper minus lower inner-lip midline height
    energy = item["audio"][0, 0].numpy().reshape(-1, 4).mean(1)
    speed = [np.gradient(np.convolve(x, np.ones(3) / 3, mode="same")) for x in (energy, opening)]
    return lagged_correlation(*speed, max_offset=12)


@needs_flite
def test_dataset_labels_move_with_the_shift_and_the_lips_follow():
    clips = [ttsclips.make_clip(CLEAN, "val", i) for i in range(4)]
    for k in (-7, -3, 0, 4, 8):
        curve = np.zeros(25)
        for clip in clips:
            (item,) = ttsclips.clip_items(clip, offset=k)
            assert item["offset"] == k and bool((item["labels"] == k).all())
            assert item["video"].shape[1] == clip.frames - abs(k) == item["audio"].shape[-1] // 4
            curve += _lag_curve(item)
        # Over a few clips the lips' best lag is the label (lips lead the sound by up to a frame).
        assert abs(int(np.argmax(curve)) - 12 - k) <= 1, (k, np.round(curve, 2))


@needs_flite
def test_tts_dataset_trains_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = _run(["train", "fcn_lips", "--preset", "tiny", "--data", "tts:6", "--epochs", "1", "--batch-size", "2",
                      "--val-clips", "1", "--out", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    gen = report["tts_generator"]
    assert gen["train_clips"] == 6 and gen["settings"]["voices"] and "flite" in gen["engines"]
    assert len(gen["lip_template_sha256"]) == 64


def test_missing_engine_is_a_one_line_cli_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, err = _run(["train", "fcn_lips", "--preset", "tiny", "--data", "tts:4", "--epochs", "1",
                      "--out", str(tmp_path / "run")], capsys)
    assert code == BackendUnavailable.exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Debian package" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("data,message", [("tts:x", "tts:N"), ("tts:0", "tts:N"), ("synth+tts:4", "does not mix")])
def test_bad_tts_sources_are_usage_errors(data, message, tmp_path, capsys):
    code, err = _run(["train", "fcn_lips", "--preset", "tiny", "--data", data, "--out", str(tmp_path / "r")], capsys)
    assert code == UsageError.exit_code and message in err and len(err.strip().splitlines()) == 1


def test_pixel_models_refuse_tts_clips(tmp_path, capsys):
    code, err = _run(["train", "fcn", "--data", "tts:4", "--out", str(tmp_path / "r")], capsys)
    assert code == UsageError.exit_code and "lip motion" in err
