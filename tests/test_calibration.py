"""Temperature scaling: ECE falls on held-out data, a mis-scaled model's scale is recovered, and the
uncertainty flag separates clean clips from clips whose audio is noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mediautil import write_video
from syncopt.inference.calibration import (Calibration, apply_calibration, expected_calibration_error, fit_calibration,
                                 load_calibration, offset_probability, samples, save_calibration, sync_logit)
from syncopt.cli import main
from syncopt.data.datasets import ClipDataset, synth_dataset
from syncopt.data.synth import SynthConfig, make_clip
from syncopt.models.decode import decode_dense
from syncopt.core.errors import UsageError
from syncopt.training.evaluate import predict
from syncopt.data.preprocess import audio_to_tensor
from syncopt.models.registry import create
from syncopt.inference.sync import sync_video
from syncopt.models.sources import resolve

CLIPS, FRAMES, SCALE = 60, 50, 5.0


def rescaled(outputs: list[dict[str, torch.Tensor]], factor: float) -> list[dict[str, torch.Tensor]]:
    """The outputs of a model whose offset logits and in-sync logit are ``factor`` times ``outputs``'."""
    # sync_prob in float64, so that scaled logits up to ~36 do not saturate at 1 (float32: ~17)
    return [out | {"offset_logits": out["offset_logits"] * factor,
                   "sync_prob": torch.sigmoid(sync_logit(out["sync_prob"]) * factor)} for out in outputs]


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(2)
    source = resolve("fcn", "tiny", None, shipped=True)
    net, weights, _ = source.build(), str(source.weights), source.synthetic
    val, test = (synth_dataset(net.spec, split, CLIPS, FRAMES) for split in ("val", "test"))
    outputs = predict(net, val), predict(net, test)
    return net, weights, test, outputs, fit(weights, *outputs)


def fit(weights: str, val: list, test: list) -> Calibration:
    return fit_calibration(samples(val), samples(test), "fcn", "tiny", weights, CLIPS, CLIPS, FRAMES)


def test_ece_definition():
    conf = torch.tensor([0.9] * 10 + [0.55] * 10)
    correct = torch.tensor([1.0] * 9 + [0.0] + [1.0] * 5 + [0.0] * 5)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0 + 0.5 * 0.05)
    assert expected_calibration_error(torch.full((4,), 0.9), torch.zeros(4)) == pytest.approx(0.9)


def test_calibration_lowers_ece_on_held_out_data(shipped):
    _, weights, _, (val, test), base = shipped
    print(f"shipped fcn: T sync {base.sync_temperature:.3f} offset {base.offset_temperature:.3f}; "
          f"test ECE sync {base.sync_ece}, offset {base.offset_ece}")
    # The shipped model is already nearly calibrated: temperatures near 1, small ECE that stays small.
    assert 0.5 < base.sync_temperature < 2 and 0.5 < base.offset_temperature < 2
    assert base.offset_ece.after < base.offset_ece.before
    assert base.sync_ece.after < 0.01

    scaled = fit(weights, rescaled(val, SCALE), rescaled(test, SCALE))
    print(f"logits x{SCALE:g}: T sync {scaled.sync_temperature:.3f} offset {scaled.offset_temperature:.3f}; "
          f"test ECE sync {scaled.sync_ece}, offset {scaled.offset_ece}")
    # NLL is scale-equivariant, so the fit temperature is the factor times the shipped model's.
    assert scaled.sync_temperature / base.sync_temperature == pytest.approx(SCALE, rel=0.1)
    assert scaled.offset_temperature / base.offset_temperature == pytest.approx(SCALE, rel=0.05)
    # Scaling back brings ECE down to the shipped model's (the in-sync ECE is small throughout: most
    # frames are confidently out of sync).
    assert scaled.offset_ece.after < 0.5 * scaled.offset_ece.before
    assert scaled.sync_ece.after < 0.8 * scaled.sync_ece.before
    assert scaled.offset_ece.after == pytest.approx(base.offset_ece.after, abs=0.002)
    assert scaled.sync_ece.after == pytest.approx(base.sync_ece.after, abs=0.001)


def test_uncertainty_flag_on_noise_audio_off_on_clean_clips(shipped):
    net, _, test, _, calibration = shipped
    constant = [it for it in test.items if it["kind"] == "constant"][:8]
    rng = np.random.default_rng(0)
    noisy = [dict(it, audio=audio_to_tensor(0.3 * rng.standard_normal(FRAMES * 640).astype(np.float32), FRAMES,
                                            test.pre)) for it in constant]
    for items, expected in ((constant, False), (noisy, True)):
        for out in predict(net, ClipDataset(items, test.pre)):
            batched = {k: v[None] for k, v in out.items()}
            result, prob, uncertain = apply_calibration(batched, decode_dense(out["offset_logits"], out["sync_prob"]),
                                                        calibration)
            assert uncertain is expected, prob
            assert prob == offset_probability(out["offset_logits"], result.offset, calibration.offset_temperature)


def test_sync_applies_calibration_file(shipped, tmp_path, capsys):
    net, weights, _, _, base = shipped
    calibration = base.model_copy(update={"sync_temperature": 3.0})
    path = save_calibration(calibration, tmp_path / "calibration.json")
    assert load_calibration(path, net.spec, weights) == calibration
    with pytest.raises(UsageError, match="was fit for fcn/tiny, not fcn_attn/tiny"):
        load_calibration(path, create("fcn_attn", "tiny").spec)

    clip = make_clip(3_000_123, SynthConfig(crop_size=48, num_frames=FRAMES), offset=2)
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, clip.audio.shape)
    videos = [write_video(tmp_path / "clean.avi", clip.frames, clip.audio),
              write_video(tmp_path / "noise.avi", clip.frames, noise)]
    with pytest.raises(SystemExit) as exit_info:
        main(["sync", *map(str, videos), "--model", "fcn", "--crop", "full", "--json", "--calibration", str(path)])
    assert exit_info.value.code == 0
    clean, noisy = json.loads(capsys.readouterr().out)
    assert clean["calibrated"] and clean["tracks"][0]["offset_frames"] == 2
    assert clean["tracks"][0]["uncertain"] is False and noisy["tracks"][0]["uncertain"] is True
    plain = sync_video(videos[0], net, weights, crop="full").tracks[0]
    assert plain.offset_probability == pytest.approx(clean["tracks"][0]["offset_probability"], rel=0.1)
    raw = torch.tensor(plain.result.per_frame_sync_prob)
    expected = torch.sigmoid(sync_logit(raw) / 3.0)
    assert np.allclose(clean["tracks"][0]["result"]["per_frame_sync_prob"], expected, atol=1e-6)
