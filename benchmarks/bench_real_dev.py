"""Choosing sync weights on development clips only: shift-following of finished ``fcn_lips`` runs (and
of log-probability-averaged ensembles of them) beside the lip-geometry baseline.

Usage: python benchmarks/bench_real_dev.py --data DEV.csv --runs R1=runs/R1 R2=runs/R2 [--ensemble R1,R2]
       [--soup R1,R2] [--name real_sync_dev_v2]
A run is a training directory (its model.safetensors) or a weights file. Scores as ``syncopt evaluate
--data`` (windows run alone, decided by the mean per-frame log-probability); an ensemble decides a
window by the mean over its models of that mean log-probability; a soup is one model whose weights
(and BatchNorm statistics) are the mean of its runs' (Wortsman et al. 2022, "Model soups"; it needs runs
from one initialisation, the same --seed). Never give it the held-out test clips: they are for the one
chosen model. Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from syncopt.analysis.shift_eval import baseline_scorer, evaluate_data, format_report, model_scorer
from syncopt.core.log import status
from syncopt.models.registry import create

from results_io import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="development clips (folder or path,offset CSV)")
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_DIR_OR_WEIGHTS")
    parser.add_argument("--ensemble", action="append", default=[], help="comma-separated run names, repeatable")
    parser.add_argument("--soup", action="append", default=[], help="comma-separated run names, repeatable")
    parser.add_argument("--preset", default="full", help="of weights files (a run directory's config.json names its own)")
    parser.add_argument("--shifts", default="-10,-5,0,5,10")
    parser.add_argument("--contexts", default="25,50,full")
    parser.add_argument("--name", default="real_sync_dev")
    args = parser.parse_args()

    models, weights = {}, {}
    for item in args.runs:
        name, _, path = item.partition("=")
        run = Path(path)
        file = run / "model.safetensors" if run.is_dir() else run
        preset = json.loads((run / "config.json").read_text())["preset"] if (run / "config.json").is_file() else args.preset
        weights[name] = str(file)
        models[name] = create("fcn_lips", preset, weights=file).eval()
    scorers = {"lip-geometry baseline": baseline_scorer} | {n: model_scorer(m) for n, m in models.items()}
    for group in args.ensemble:
        names = group.split(",")
        scorers[" + ".join(names)] = model_scorer(*(models[n] for n in names))
    for group in args.soup:
        names = group.split(",")
        scorers[f"soup({', '.join(names)})"] = model_scorer(soup([models[n] for n in names]))
    report = evaluate_data(args.data, scorers, [int(s) for s in args.shifts.split(",")], args.contexts.split(","),
                           progress=status)
    print(format_report(report))
    write_results(args.name, {"data": args.data, "weights": weights, "report": report.model_dump(mode="json")})


def soup(models: list[torch.nn.Module]) -> torch.nn.Module:
    """A copy of the first model with every floating-point tensor of its state the models' mean."""
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()}
    averaged = copy.deepcopy(models[0])
    averaged.load_state_dict(mean)
    return averaged.eval()


if __name__ == "__main__":
    main()
