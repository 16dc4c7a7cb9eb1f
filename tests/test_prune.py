"""Pruning: the requested MAC cut, runs, saves and reloads, unchanged channels keep their outputs."""

from __future__ import annotations

import pytest
import torch

import syncopt
from syncopt.cli import main
from syncopt.models.architecture import METADATA_KEY
from syncopt.compress.prune import PruneConfig, prune, prune_model, save_pruned
from syncopt.models.sources import resolve
from syncopt.models.complexity import count_macs
from syncopt.core.errors import UsageError, WeightsError
from syncopt.models.sources import shipped_weights


@pytest.mark.slow
def test_prune_hits_mac_budget_runs_and_reloads(tmp_path):
    config = PruneConfig(model="x3d_s", macs=0.5, val_clips=4, clip_frames=30, epochs=0, criterion="group_norm")
    report = prune(config, tmp_path)
    assert abs(report.macs_ratio - 0.5) <= 0.05
    model = resolve(tmp_path).build()
    assert count_macs(model, model.spec) == report.pruned.macs
    feeds = model.spec.example_inputs(T=20, batch=2, seed=1)
    out = model(**feeds)
    assert out["video_emb"].shape == (2, 32, 20) and out["offset_logits"].shape == (2, 31, 20)
    again = resolve(tmp_path).build()(**feeds)
    for k in out:
        assert torch.equal(out[k], again[k])


def test_zero_channels_are_pruned_without_changing_outputs(tmp_path):
    model = syncopt.create("fcn", "tiny")
    conv, bn = model.video_encoder.features[3], model.video_encoder.features[4]  # 16 channels
    with torch.no_grad():
        for c in range(4):  # channels whose output is exactly zero after BN + ReLU
            conv.weight[c].zero_(), conv.bias[c].zero_(), bn.weight[c].zero_(), bn.bias[c].zero_()
    feeds = model.spec.example_inputs(T=12, seed=2)
    before = {k: v.detach() for k, v in model(**feeds).items()}
    config = PruneConfig(model="fcn", macs=None, ratio=0.0, layer_ratios={"video_encoder.features.3": 0.25},
                         criterion="magnitude")
    prune_model(model, config)
    assert conv.out_channels == 12 and bn.num_features == 12
    after = model(**feeds)
    for k in before:
        assert torch.allclose(after[k], before[k], atol=1e-5), k
    save_pruned(model, tmp_path)
    reloaded = resolve(tmp_path).build()(**feeds)
    assert torch.allclose(reloaded["offset_logits"], before["offset_logits"], atol=1e-5)


def test_taylor_criterion_and_bad_budget():
    model = syncopt.create("fcn", "tiny")
    base = count_macs(model, model.spec)
    prune_model(model, PruneConfig(model="fcn", macs=None, ratio=0.25, criterion="taylor", batch_size=2,
                                   clip_frames=20))
    assert count_macs(model, model.spec) < 0.8 * base
    with pytest.raises(UsageError, match="MAC budget"):
        prune_model(syncopt.create("fcn", "tiny"), PruneConfig(model="fcn", macs=1.5))


def test_cli_prune_unknown_model(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prune", "x3d_ss", "--macs", "0.5"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown model 'x3d_ss'")


def _pruned_fcn(tmp_path):
    """Shipped tiny fcn weights pruned by a quarter of the channels, saved as a run directory."""
    model = syncopt.create("fcn", "tiny", weights=shipped_weights("fcn", "tiny"))
    prune_model(model, PruneConfig(model="fcn", macs=None, ratio=0.25, criterion="magnitude"))
    return model, save_pruned(model, tmp_path)


def test_pruned_weights_load_through_create_and_export_with_parity(tmp_path):
    from syncopt.export.onnx import export_onnx
    from syncopt.parity import check_parity

    model, weights = _pruned_fcn(tmp_path / "run")
    fresh = syncopt.create("fcn", "tiny")
    assert count_macs(model, model.spec) < 0.8 * count_macs(fresh, fresh.spec)
    feeds = model.spec.example_inputs(T=30, batch=2, seed=4)
    with torch.no_grad():
        before = model(**feeds)
        again = syncopt.create("fcn", "tiny", weights=weights)(**feeds)  # the generic path, no sidecar
    for k in before:
        assert torch.equal(before[k], again[k]), k
    artifact = export_onnx(model, tmp_path / "onnx")
    report = check_parity(artifact.path, synth_clips=4)  # reference rebuilt by the torch runtime via create()
    assert report.passed, report.failures
    assert all(o.max_abs <= 1e-4 for o in report.outputs)


def _rewrite_architecture(weights, edit) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(weights), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        text = f.metadata()[METADATA_KEY]
    save_file(state, str(weights), metadata={METADATA_KEY: edit(json.loads(text), text)})


@pytest.mark.parametrize("edit, message", [
    (lambda arch, text: text[: len(text) // 2], "malformed pruned architecture"),
    (lambda arch, text: __import__("json").dumps(arch | {"layers": dict(list(arch["layers"].items())[1:])}),
     "shape mismatches"),
    (lambda arch, text: __import__("json").dumps(arch | {"layers": {"nope": {"attrs": {}, "shapes": {}}}}),
     "names layer 'nope'"),
])
def test_damaged_architecture_is_a_one_line_error(tmp_path, capsys, edit, message):
    _, weights = _pruned_fcn(tmp_path)
    _rewrite_architecture(weights, edit)
    capsys.readouterr()  # drop the pruning status lines
    with pytest.raises(WeightsError, match=message):
        syncopt.create("fcn", "tiny", weights=weights)
    with pytest.raises(SystemExit) as exc:
        main(["export", "fcn", "--weights", str(weights), "--out", str(tmp_path / "art")])
    assert exc.value.code == WeightsError.exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message.split()[0] in err
    assert not list((tmp_path / "art").glob("*.onnx"))


def test_pruned_weights_of_another_model_are_refused(tmp_path):
    _, weights = _pruned_fcn(tmp_path)
    with pytest.raises(WeightsError, match=r"pruned fcn \(preset tiny\), not fcn_attn"):
        syncopt.create("fcn_attn", "tiny", weights=weights)


@pytest.mark.slow
def test_iterative_rounds_fine_tune_with_recovery_epochs(tmp_path):
    config = PruneConfig(model="fcn", weights=str(shipped_weights("fcn", "tiny")), macs=0.5, steps=2, epochs=1,
                         final_epochs=1, train_clips=16, val_clips=8, batch_size=8, workers=1)
    report = prune(config, tmp_path)
    assert [h.epoch for h in report.history] == [1, 1, 2]  # round 1: one epoch; round 2: one + one recovery
    assert 0.4 <= report.macs_ratio <= 0.55  # tiny fcn's coarse channel steps overshoot (0.44, docs/compression.md)
    assert (tmp_path / "round1" / "checkpoint.pt").is_file() and (tmp_path / "round2" / "checkpoint.pt").is_file()
