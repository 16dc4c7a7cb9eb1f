"""The TTS training domain (issue 19 section 3): train ``fcn_lips`` on TTS clips alone, on a small real set,
or on both mixed, and score each on real development clips with known shifts beside the lip-geometry
baseline (``benchmarks/realclips/dev.csv``: tuning clips, never the held-out test set).

Usage: python benchmarks/bench_tts_domain.py --name NAME [--tts N] [--real CSV] [--epochs 20]
       [--time-budget MIN] [--eval benchmarks/realclips/dev.csv]
Writes benchmarks/results/tts_domain_NAME.json: the training sources (TTS generator settings, the
sha256 of every real training clip), the training history and the evaluation by context and clip.
Refuses an evaluation file named test.csv, and real training clips that are also evaluation clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from syncopt.core.atomic import sha256_file
from syncopt.data.datasets import read_manifest
from syncopt.core.log import status
from syncopt.models.registry import create
from syncopt.analysis.shift_eval import baseline_scorer, evaluate_data, format_report, model_scorer
from syncopt.training.train import TrainConfig, train

from results_io import write_results

DEV = Path(__file__).parent / "realclips" / "dev.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--tts", type=int, default=0, help="TTS training clips (0: none)")
    parser.add_argument("--real", default=None, help="real in-sync training clips: folder or manifest .csv")
    parser.add_argument("--eval", default=str(DEV))
    parser.add_argument("--preset", default="full")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--time-budget", type=float, default=None, help="minutes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--val-clips", type=int, default=60, help="TTS validation clips (at most a tenth of --tts)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more oversubscribe a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shifts", default="-10,-5,0,5,10")
    parser.add_argument("--contexts", default="25,50,full")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if Path(args.eval).name == "test.csv":
        raise SystemExit("bench_tts_domain tunes settings: evaluate on dev clips, never on the held-out test.csv")
    sources = ([f"tts:{args.tts}"] if args.tts else []) + ([args.real] if args.real else [])
    if not sources:
        raise SystemExit("nothing to train on: pass --tts N and/or --real CSV")
    eval_sha = {sha256_file(p): p.name for p, _ in read_manifest(args.eval)}
    real_sha = {sha256_file(p): p.name for p, _ in read_manifest(args.real)} if args.real else {}
    if overlap := set(real_sha) & set(eval_sha):
        raise SystemExit(f"evaluation clips used in training: {sorted(eval_sha[h] for h in overlap)}")

    out = args.out or f"runs/tts_domain_{args.name}"
    config = TrainConfig(model="fcn_lips", preset=args.preset, data="+".join(sources), epochs=args.epochs,
                         batch_size=args.batch_size, seed=args.seed, window=40, time_budget_min=args.time_budget,
                         val_clips=args.val_clips)
    report = train(config, out)
    model = create("fcn_lips", args.preset, weights=Path(out) / "model.safetensors")
    shifts = [int(s) for s in args.shifts.split(",")]
    result = evaluate_data(args.eval, {"lip-geometry baseline": baseline_scorer, "fcn_lips": model_scorer(model)},
                           shifts, args.contexts.split(","), progress=status)
    print(format_report(result))
    write_results(f"tts_domain_{args.name}", {
        "train": {"data": config.data, "epochs": report.epochs_done, "train_minutes": report.train_time_s / 60,
                  "data_minutes": report.data_time_s / 60, "params": report.params,
                  "tts_generator": report.tts_generator,
                  "real_clips_sha256": dict(sorted((n, h) for h, n in real_sha.items())),
                  "history": [{"epoch": h.epoch, "loss": h.loss, "train_frame_accuracy": h.train_frame_accuracy,
                               "val_frame_accuracy": h.val.per_frame_accuracy} for h in report.history],
                  "config": config.model_dump(mode="json")},
        "eval": result.model_dump(mode="json"),
    })


if __name__ == "__main__":
    main()
