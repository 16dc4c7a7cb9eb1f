"""``syncopt average``: one model whose weights are the mean of finished runs' ("model soups").

Runs of one model that start from the same initialisation (the same ``--seed``, or the same ``--init``
weights whatever their seeds) and differ in what
they then saw (training window, audio context, data) stay in one basin of the loss, so the mean of
their weights is a working model, usually better than the runs' average, at one model's cost
(Wortsman et al. 2022, "Model soups", ICML; on this project's real-clip runs 1-3 points above the
average run at 1-s windows, docs/real_video.md). BatchNorm statistics are averaged with the weights. The soup is a run
directory like ``syncopt train``'s, so everything that reads runs (evaluate, export, distill, the
shipped-weights manifest) takes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from syncopt.core.atomic import atomic_dir, write_json
from syncopt.core.errors import UsageError
from syncopt.models.registry import create
from syncopt.models.weights import load_state_dict, save_state_dict
from syncopt.training.train import TrainConfig, TrainReport

# What runs must share to be averaged: one architecture and one initialisation (the --init weights, or the
# --seed that drew the initial weights when there are none).
SHARED = ("model", "preset", "video_weights", "audio_weights")


def _initialisation(report: TrainReport) -> str:
    """The ``--seed``, or the ``--init`` weights: by their sha256 where the run recorded it (``shipped`` names
    whichever weights the installed package ships), else by the name given."""
    config = report.config
    if not config.init:
        return f"--seed {config.seed}"
    return f"--init weights of sha256 {report.init_sha256[:12]}" if report.init_sha256 else f"--init {config.init}"


def read_run(run: str | os.PathLike) -> TrainReport:
    """A finished run's report (one-line error when ``run`` is not a finished training run)."""
    path = Path(run)
    if not (path / "report.json").is_file() or not (path / "model.safetensors").is_file():
        raise UsageError(f"{run} is not a finished training run (no report.json and model.safetensors)")
    return TrainReport.model_validate_json((path / "report.json").read_text())


def read_runs(runs: Sequence[str | os.PathLike], making: str, least: int = 2) -> list[TrainReport]:
    """The reports of at least ``least`` finished runs (one-line errors naming what ``making`` needs them for)."""
    if len(runs) < least:
        raise UsageError(f"{making} needs at least {('one run', 'two runs')[least - 1]}, got {len(runs)}")
    return [read_run(r) for r in runs]


def average_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike) -> TrainReport:
    """Write ``out``, a run directory holding the mean of ``runs``' weights, and return its report."""
    reports = read_runs(runs, "averaging")
    first = reports[0].config
    for run, report in zip(runs[1:], reports[1:]):
        for key in SHARED:
            if getattr(report.config, key) != getattr(first, key):
                raise UsageError(f"{run} differs from {runs[0]} in {key} ({getattr(report.config, key)!r} against "
                                 f"{getattr(first, key)!r}): average runs of one model and initialisation")
        if _initialisation(report) != _initialisation(reports[0]):
            raise UsageError(f"{run} differs from {runs[0]} in its initialisation ({_initialisation(report)} "
                             f"against {_initialisation(reports[0])}): average runs of one model and initialisation")
        if report.tts_generator != reports[0].tts_generator:
            raise UsageError(f"{run} differs from {runs[0]} in its TTS training clips")
    states = [load_state_dict(Path(r) / "model.safetensors") for r in runs]
    model = create(first.model, first.preset)
    if any(s.keys() != states[0].keys() for s in states) or states[0].keys() != model.state_dict().keys():
        raise UsageError(f"the runs' weights do not all fit {first.model} ({first.preset}) (a pruned run?)")
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}
    model.load_state_dict(mean)
    return write_combined(model, reports, out, averaged_from=[r.config for r in reports],
                          init_sha256=reports[0].init_sha256)


def write_combined(model: torch.nn.Module, reports: Sequence[TrainReport], out: str | os.PathLike,
                   **fields) -> TrainReport:
    """Write ``out``, the run directory of ``model`` made of finished runs (a soup or an ensemble), whose
    report joins their data, times and TTS settings, with ``fields`` (how it was made) added."""
    first, target = reports[0].config, Path(out)
    # it has seen every run's data: their sources joined as one --data ('+' mixes sources)
    data = "+".join(dict.fromkeys(part for r in reports for part in r.config.data.split("+")))
    report = TrainReport(config=first.model_copy(update={"data": data}), epochs_done=max(r.epochs_done for r in reports),
                         wall_time_s=sum(r.wall_time_s for r in reports),
                         train_time_s=sum(r.train_time_s for r in reports),
                         data_time_s=sum(r.data_time_s for r in reports),
                         params=sum(p.numel() for p in model.parameters()), history=[],
                         weights=str(target / "model.safetensors"), tts_generator=reports[0].tts_generator, **fields)
    with atomic_dir(target) as tmp:
        save_state_dict(model, tmp / "model.safetensors")
        write_json(tmp / "config.json", {"model": first.model, "preset": first.preset})
        write_json(tmp / "report.json", report.model_dump(mode="json"))
    return report
