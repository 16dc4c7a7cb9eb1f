"""Choosing sync weights on development clips only: shift-following of finished ``fcn_lips`` runs (and
of log-probability-averaged ensembles of them) beside the lip-geometry baseline.

Usage: python benchmarks/bench_real_dev.py --data DEV.csv --runs R1=runs/R1 R2=runs/R2 [--ensemble R1,R2]
       [--name real_sync_dev_v2]
A run is a training directory (its model.safetensors) or a weights file. Scores as ``syncopt evaluate
--data`` (windows run alone, decided by the mean per-frame log-probability); an ensemble decides a
window by the mean over its models of that mean log-probability. Never give it the held-out test clips:
they are for the one chosen model. Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from syncopt.analysis.shift_eval import Scorer, baseline_scorer, evaluate_data, format_report, shifted
from syncopt.core.log import status
from syncopt.data.lipcache import ClipFeatures
from syncopt.data.lipfeatures import lip_inputs
from syncopt.models.registry import create

from results_io import write_results


def ensemble_scorer(models: list) -> Scorer:
    """Windows decided by the mean log-probability over ``models`` (one model: ``model_scorer``'s decision)."""
    k_max = models[0].spec.max_offset

    def score(clip: ClipFeatures, k: int):
        mfcc, _ = shifted(clip, k)
        video, audio = lip_inputs(clip.lips, mfcc[:, 4 * clip.start:4 * (clip.start + clip.frames)])

        @torch.no_grad()
        def decide(lo: int, hi: int) -> int:
            a_lo, a_hi = max(0, lo - k_max), min(video.shape[-1], hi + k_max)
            pad = (a_lo - (lo - k_max), (hi + k_max) - a_hi)
            total = sum(torch.log_softmax(m.forward_context(video[None, :, lo:hi], audio[None, ..., 4 * a_lo:4 * a_hi],
                                                            pad)["offset_logits"][0].float(), 0).mean(1) for m in models)
            return int(total.argmax()) - k_max

        return decide

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="development clips (folder or path,offset CSV)")
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_DIR_OR_WEIGHTS")
    parser.add_argument("--ensemble", action="append", default=[], help="comma-separated run names, repeatable")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--shifts", default="-10,-5,0,5,10")
    parser.add_argument("--contexts", default="25,50,full")
    parser.add_argument("--name", default="real_sync_dev")
    args = parser.parse_args()

    models, weights = {}, {}
    for item in args.runs:
        name, _, path = item.partition("=")
        file = Path(path) / "model.safetensors" if Path(path).is_dir() else Path(path)
        weights[name] = str(file)
        models[name] = create("fcn_lips", args.preset, weights=file).eval()
    scorers = {"lip-geometry baseline": baseline_scorer} | {n: ensemble_scorer([m]) for n, m in models.items()}
    for group in args.ensemble:
        names = group.split(",")
        scorers[" + ".join(names)] = ensemble_scorer([models[n] for n in names])
    report = evaluate_data(args.data, scorers, [int(s) for s in args.shifts.split(",")], args.contexts.split(","),
                           progress=status)
    print(format_report(report))
    write_results(args.name, {"data": args.data, "weights": weights, "report": report.model_dump(mode="json")})


if __name__ == "__main__":
    main()
