"""``syncopt ensemble``: finished runs as one output ensemble that every model reader loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import syncopt
from syncopt.cli import main
from syncopt.core.atomic import write_json
from syncopt.core.errors import UsageError
from syncopt.models.ensemble import SyncEnsemble
from syncopt.models.weights import save_state_dict
from syncopt.training.train import TrainConfig, TrainReport


def run_dir(folder: Path, seed: int, preset: str = "tiny", data: str = "clips.csv") -> Path:
    """A finished fcn_lips run: seed ``seed``'s initial weights with a non-zero in-sync head (as trained)."""
    torch.manual_seed(seed)
    model = syncopt.create("fcn_lips", preset)
    torch.nn.init.normal_(model.predictor.refine[-1].weight, std=0.5)
    folder.mkdir()
    save_state_dict(model, folder / "model.safetensors")
    write_json(folder / "config.json", {"model": "fcn_lips", "preset": preset})
    report = TrainReport(config=TrainConfig(model="fcn_lips", preset=preset, data=data, seed=seed), epochs_done=3,
                         wall_time_s=10.0, train_time_s=8.0, data_time_s=1.0, history=[],
                         params=sum(p.numel() for p in model.parameters()), weights=str(folder / "model.safetensors"))
    write_json(folder / "report.json", report.model_dump(mode="json"))
    return folder


def inputs(frames: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(7)
    return torch.randn(1, 120, frames), torch.randn(1, 1, 13, 4 * frames)


def test_the_ensemble_averages_its_members_and_its_cosine_is_theirs(tmp_path):
    members = [syncopt.create("fcn_lips", "tiny", weights=run_dir(tmp_path / f"r{s}", s) / "model.safetensors")
               for s in range(3)]
    ensemble = SyncEnsemble(members).eval()
    video, audio = inputs()
    with torch.no_grad():
        out, each = ensemble(video, audio), [m(video, audio) for m in members]
    for name in ("offset_logits", "correlation", "sync_prob"):
        torch.testing.assert_close(out[name], torch.stack([o[name] for o in each]).mean(0))
    assert out["video_emb"].shape[1] == 3 * each[0]["video_emb"].shape[1]
    assert dict((o.name, o.shape) for o in ensemble.spec.outputs)["video_emb"][1] == out["video_emb"].shape[1]
    cosine = (F.normalize(out["video_emb"], dim=1) * F.normalize(out["audio_emb"], dim=1)).sum(1)
    torch.testing.assert_close(cosine, out["correlation"][:, ensemble.spec.max_offset], atol=1e-5, rtol=0)
    assert not torch.allclose(each[0]["offset_logits"], each[1]["offset_logits"])  # members do differ


def test_cli_writes_a_run_that_loads_as_the_ensemble(tmp_path, capsys):
    runs = [run_dir(tmp_path / f"r{s}", s, data=f"clips{s}.csv") for s in range(2)]
    with pytest.raises(SystemExit) as done:
        main(["ensemble", *map(str, runs), "--out", str(tmp_path / "ens")])
    assert done.value.code == 0 and "joined 2 runs of fcn_lips (tiny)" in capsys.readouterr().out
    report = TrainReport.model_validate_json((tmp_path / "ens" / "report.json").read_text())
    assert [c.seed for c in report.ensemble_of] == [0, 1] and report.config.data == "clips0.csv+clips1.csv"
    from syncopt.models.sources import resolve

    loaded = resolve(str(tmp_path / "ens")).build()
    assert isinstance(loaded, SyncEnsemble) and len(loaded.members) == 2
    assert report.params == sum(p.numel() for p in loaded.parameters())
    video, audio = inputs()
    with torch.no_grad():
        want = syncopt.create("fcn_lips", "tiny", weights=runs[1] / "model.safetensors")(video, audio)
        got = loaded.members[1](video, audio)
    torch.testing.assert_close(got["offset_logits"], want["offset_logits"])


def test_mirror_views_average_each_member_on_both_images_and_load_back(tmp_path, capsys):
    from syncopt.data.lipfeatures import mirror_channels

    run = run_dir(tmp_path / "r0", 0)
    member = syncopt.create("fcn_lips", "tiny", weights=run / "model.safetensors")
    with pytest.raises(SystemExit) as done:
        main(["ensemble", str(run), "--mirror", "--out", str(tmp_path / "m")])
    assert done.value.code == 0 and "joined 1 run and its mirror views" in capsys.readouterr().out
    assert TrainReport.model_validate_json((tmp_path / "m" / "report.json").read_text()).mirror_views
    loaded = syncopt.create("fcn_lips", "tiny", weights=tmp_path / "m" / "model.safetensors")
    assert isinstance(loaded, SyncEnsemble) and loaded.mirror and len(loaded.members) == 1
    video, audio = inputs()
    index, sign = mirror_channels()
    with torch.no_grad():
        out = loaded(video, audio)
        plain, mirrored = member(video, audio), member(video[:, index] * torch.tensor(sign)[None, :, None], audio)
    for name in ("offset_logits", "correlation", "sync_prob"):
        torch.testing.assert_close(out[name], (plain[name] + mirrored[name]) / 2)
    assert not torch.allclose(plain["offset_logits"], mirrored["offset_logits"])  # the views do differ
    assert out["video_emb"].shape[1] == 2 * plain["video_emb"].shape[1]


def test_mirror_views_need_a_lip_model():
    with pytest.raises(UsageError, match="mirror views need a model that reads face-mesh lip motion"):
        SyncEnsemble([syncopt.create("fcn", "tiny")], mirror=True)


def test_members_of_another_preset_or_an_ensemble_are_refused(tmp_path):
    from syncopt.training.ensemble import ensemble_runs

    a, b, c = run_dir(tmp_path / "a", 0), run_dir(tmp_path / "b", 1), run_dir(tmp_path / "c", 2, preset="full")
    with pytest.raises(UsageError, match="one model and preset"):
        ensemble_runs([a, c], tmp_path / "x")
    with pytest.raises(UsageError, match="at least two runs"):
        ensemble_runs([a], tmp_path / "x")
    ensemble_runs([a, b], tmp_path / "ab")
    with pytest.raises(UsageError, match="an ensemble already"):
        ensemble_runs([tmp_path / "ab", a], tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("mirror", [False, True])
def test_the_ensemble_exports_to_onnx_with_parity(tmp_path, mirror):
    import onnxruntime as ort

    from syncopt.export import export
    from syncopt.training.ensemble import ensemble_runs

    ensemble_runs([run_dir(tmp_path / f"r{s}", s) for s in range(2)], tmp_path / "ens", mirror)
    model = syncopt.create("fcn_lips", "tiny", weights=tmp_path / "ens" / "model.safetensors")
    artifact = export(model, "onnx", tmp_path / "onnx", "fp32")
    video, audio = inputs(50)
    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"video": video.numpy(),
                                                                                "audio": audio.numpy()})))
    with torch.no_grad():
        want = model(video, audio)
    for name in ("offset_logits", "video_emb", "sync_prob"):  # DESIGN.md's fp32 row: 1e-4 absolute
        np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-4, rtol=0)


def test_pruning_an_ensemble_is_a_one_line_error(tmp_path):
    from syncopt.compress.prune import PruneConfig, prune
    from syncopt.training.ensemble import ensemble_runs

    ensemble_runs([run_dir(tmp_path / f"r{s}", s) for s in range(2)], tmp_path / "ens")
    with pytest.raises(UsageError, match="ensemble of fcn_lips runs: prune a member's run"):
        prune(PruneConfig(model="fcn_lips"), tmp_path / "pruned", source=str(tmp_path / "ens"))
    assert not (tmp_path / "pruned").exists()
