"""``syncopt average``: a weight average ("model soup") of finished runs is one run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import syncopt
from syncopt.cli import main
from syncopt.core.atomic import write_json
from syncopt.core.errors import UsageError
from syncopt.models.weights import load_state_dict, save_state_dict
from syncopt.training.train import TrainConfig, TrainReport


def fake_run(folder: Path, step: float, **config) -> Path:
    """A finished fcn_lips tiny run: the seed-0 initialisation with every float tensor moved by ``step``."""
    torch.manual_seed(0)
    model = syncopt.create("fcn_lips", "tiny")
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(step)
    folder.mkdir()
    save_state_dict(model, folder / "model.safetensors")
    cfg = TrainConfig(**{"model": "fcn_lips", "preset": "tiny", "data": "clips.csv", "seed": 0, **config})
    write_json(folder / "config.json", {"model": "fcn_lips", "preset": "tiny"})
    report = TrainReport(config=cfg, epochs_done=3, wall_time_s=10.0, train_time_s=8.0, data_time_s=1.0,
                         params=sum(p.numel() for p in model.parameters()), history=[],
                         weights=str(folder / "model.safetensors"))
    write_json(folder / "report.json", report.model_dump(mode="json"))
    return folder


def test_the_soup_is_the_mean_of_the_runs_weights(tmp_path, capsys):
    a = fake_run(tmp_path / "a", 0.0, window=40)
    b = fake_run(tmp_path / "b", 1.0, window=25, audio_context=True)
    c = fake_run(tmp_path / "c", 5.0, window=32, data="clips.csv+more.csv")
    with pytest.raises(SystemExit) as done:
        main(["average", str(a), str(b), str(c), "--out", str(tmp_path / "soup")])
    assert done.value.code == 0
    soup, states = load_state_dict(tmp_path / "soup" / "model.safetensors"), [load_state_dict(r / "model.safetensors")
                                                                             for r in (a, b, c)]
    for k, v in soup.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, states[0][k] + 2.0)  # (0 + 1 + 5) / 3
        else:
            assert torch.equal(v, states[0][k])
    report = TrainReport.model_validate_json((tmp_path / "soup" / "report.json").read_text())
    assert [c.window for c in report.averaged_from] == [40, 25, 32] and report.train_time_s == 24.0
    assert report.config.data == "clips.csv+more.csv"  # what the soup has seen: every run's data
    syncopt.create("fcn_lips", "tiny", weights=tmp_path / "soup" / "model.safetensors")  # loads as the model it is
    assert "averaged 3 runs of fcn_lips (tiny)" in capsys.readouterr().out


@pytest.mark.parametrize("field,value,why", [("seed", 1, "its initialisation"), ("preset", "full", "preset"),
                                             ("init", "runs/x", "its initialisation")])
def test_runs_of_another_initialisation_are_refused(tmp_path, field, value, why):
    from syncopt.training.soup import average_runs

    a = fake_run(tmp_path / "a", 0.0)
    b = fake_run(tmp_path / "b", 1.0)
    report = TrainReport.model_validate_json((b / "report.json").read_text())
    write_json(b / "report.json", report.model_copy(update={"config": report.config.model_copy(
        update={field: value})}).model_dump(mode="json"))
    with pytest.raises(UsageError, match=f"differs from .* in {why}"):
        average_runs([a, b], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_fine_tunes_of_one_init_average_whatever_their_seeds(tmp_path):
    from syncopt.training.soup import average_runs

    a = fake_run(tmp_path / "a", 0.0, init="shipped", seed=0)
    b = fake_run(tmp_path / "b", 2.0, init="shipped", seed=7)
    report = average_runs([a, b], tmp_path / "soup")
    assert [c.seed for c in report.averaged_from] == [0, 7]
    soup, first = load_state_dict(tmp_path / "soup" / "model.safetensors"), load_state_dict(a / "model.safetensors")
    key = next(k for k, v in first.items() if v.is_floating_point())
    torch.testing.assert_close(soup[key], first[key] + 1.0)


@pytest.mark.parametrize("inits,refused", [(("shipped", "shipped"), True), (("shipped", "runs/na0"), False)])
def test_fine_tunes_are_matched_by_their_init_file_not_its_name(tmp_path, inits, refused):
    """``--init shipped`` of two package versions names two files: the recorded sha256 tells them apart,
    and one file reached by two names (``shipped``, a run directory) is one initialisation."""
    from syncopt.training.soup import average_runs

    shas = ("a" * 64, "b" * 64) if refused else ("c" * 64, "c" * 64)
    runs = []
    for name, init, sha, step in zip("ab", inits, shas, (0.0, 2.0)):
        run = fake_run(tmp_path / name, step, init=init)
        report = TrainReport.model_validate_json((run / "report.json").read_text())
        write_json(run / "report.json", report.model_copy(update={"init_sha256": sha}).model_dump(mode="json"))
        runs.append(run)
    if refused:
        with pytest.raises(UsageError, match="in its initialisation .*sha256 bbbbbbbbbbbb against .*sha256 aaaaaaaaaaaa"):
            average_runs(runs, tmp_path / "soup")
    else:
        assert average_runs(runs, tmp_path / "soup").init_sha256 == "c" * 64
