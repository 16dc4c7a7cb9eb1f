"""Sync on real video (issue 19): train ``fcn_lips`` on real clips, score it on held-out real clips with
known audio shifts beside the lip-geometry baseline, and optionally ship the weights.

Usage: python benchmarks/bench_real_sync.py --train DIR [--epochs 60] [--eval benchmarks/realclips/test.csv]
       [--out runs/fcn_lips_real] [--window 25] [--audio-context] [--tts N] [--ship]
       python benchmarks/bench_real_sync.py --run runs/chosen [--ship]   # score a finished run (or a soup of runs)
Writes benchmarks/results/real_sync.json (+ .png; ``--name`` another name, as for the second held-out set
``--eval benchmarks/realclips/test_web15.csv --name real_sync_web15``). The training folder's clips and the evaluation clips
must not overlap: the script refuses when a sha256 appears in both. ``--ship`` copies the weights to
syncopt/assets/fcn_lips_<preset>_real.safetensors with a manifest listing every training clip's sha256
and, with ``--tts N`` (N TTS clips mixed in), the TTS generator settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.data.datasets import held_out, read_manifest
from syncopt.core.log import status
from syncopt.models.registry import create
from syncopt.analysis.shift_eval import baseline_scorer, evaluate_data, format_report, model_scorer, plot_shift_eval
from syncopt.training.train import TrainConfig, TrainReport, train

from results_io import RESULTS, write_results

ASSETS = Path(__file__).resolve().parents[1] / "syncopt" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", help="folder of in-sync training videos (or a manifest .csv) to train on")
    parser.add_argument("--eval", default=str(Path(__file__).parent / "realclips" / "test.csv"))
    parser.add_argument("--preset", default="full")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shifts", default="-10,-5,0,5,10")
    parser.add_argument("--contexts", default="25,50,full")
    parser.add_argument("--window", type=int, default=40, help="training window (frames)")
    parser.add_argument("--audio-context", action="store_true",
                        help="train with audio reaching 15 frames beyond each window, as windows are evaluated")
    parser.add_argument("--out", default="runs/fcn_lips_real")
    parser.add_argument("--run", help="a finished training run or soup (syncopt average): score and ship it "
                                      "instead of training; its report names the data it trained on")
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--name", default="real_sync", help="results name: benchmarks/results/NAME.json and .png")
    parser.add_argument("--tts", type=int, default=0, help="also train on this many TTS clips (syncopt.data.ttsclips)")
    args = parser.parse_args()
    if args.run:  # a run (a soup or an ensemble of runs) names what it trained on: every real source of its --data
        if args.train:
            raise SystemExit("--run scores a finished run on the data it names; give no --train")
        report = TrainReport.model_validate_json((Path(args.run) / "report.json").read_text())
        made_of = (report.averaged_from or []) + (report.ensemble_of or [])
        if args.ship and (report.config.init or any(c.init for c in made_of)):
            raise SystemExit("--ship: a fine-tune (--init) saw its initial weights' data too, which its manifest "
                             "would not list; ship a run trained from scratch")
        sources = [part for part in report.config.data.split("+") if not part.startswith("tts:")]
    elif args.train:
        sources = [args.train]
    else:
        raise SystemExit("give --train (training data) or --run (a finished run)")

    train_entries = [entry for source in sources for entry in read_manifest(source)]
    unique = list(dict.fromkeys(p for p, _ in train_entries))  # a manifest may list a clip more than once
    train_sha = {sha256_file(p): p.name for p in unique}
    eval_sha = {sha256_file(p): p.name for p, _ in read_manifest(args.eval)}
    if overlap := set(train_sha) & set(eval_sha):
        raise SystemExit(f"evaluation clips used in training: {sorted(eval_sha[h] for h in overlap)}")

    if args.run:
        config = report.config
        args.preset, weights = config.preset, Path(args.run) / "model.safetensors"
    else:
        data = f"tts:{args.tts}+{args.train}" if args.tts else args.train
        config = TrainConfig(model="fcn_lips", preset=args.preset, data=data, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed, window=args.window,
                             audio_context=args.audio_context)
        report = train(config, args.out)
        weights = Path(args.out) / "model.safetensors"
    model = create("fcn_lips", args.preset, weights=weights)
    shifts = [int(s) for s in args.shifts.split(",")]
    contexts = args.contexts.split(",")
    result = evaluate_data(args.eval, {"lip-geometry baseline": baseline_scorer, "fcn_lips": model_scorer(model)},
                           shifts, contexts, progress=status)
    print(format_report(result))
    plot_shift_eval(result, RESULTS / f"{args.name}.png")
    split = [held_out(source) for source in sources]
    provenance = {"averaged_from": [c.model_dump(mode="json") for c in report.averaged_from or []],  # soups, ensembles
                  "ensemble_of": [c.model_dump(mode="json") for c in report.ensemble_of or []],
                  "mirror_views": report.mirror_views}
    summary = {
        "train": {"data": config.data, "clips": sum(len(t) for t, _ in split), "val_clips": sum(len(v) for _, v in split),
                  "epochs": report.epochs_done, "train_minutes": report.train_time_s / 60,
                  "params": report.params,
                  "val_last": report.history[-1].val.model_dump(mode="json") if report.history else None,
                  "config": config.model_dump(mode="json"), **provenance},
        "eval": result.model_dump(mode="json"),
    }
    write_results(args.name, summary)
    if args.ship:
        target = ASSETS / f"fcn_lips_{args.preset}_real.safetensors"
        with atomic_path(target) as tmp:
            shutil.copyfile(weights, tmp)
        manifest = {
            "summary": ("real video" + (f" and {report.tts_generator['train_clips']} TTS clips (syncopt.data.ttsclips)"
                                         if report.tts_generator else ", no synthetic data")
                        + ", self-supervised (audio shifts): ") + ", ".join(
                f"{n} clips from {folder}" for folder, n in Counter(p.parent.name for p in unique).items()),
            "repeats": {p.name: n for p, n in Counter(p for p, _ in train_entries).items() if n > 1},  # over all sources
            "offsets": {p.name: o for p, o in dict(train_entries).items() if o},  # the manifest's base offsets (labels)
            "model": "fcn_lips", "preset": args.preset, "weights_sha256": sha256_file(target),
            "synthetic_generator": report.tts_generator, "training_config": config.model_dump(mode="json"),
            **provenance,
            "real_clips_sha256": dict(sorted((name, h) for h, name in train_sha.items())),
            "held_out_evaluation": {"clips_sha256": result.clip_sha256, "results": f"benchmarks/results/{args.name}.json"},
        }
        with atomic_path(target.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
        status(f"shipped {target.name} and its manifest")


if __name__ == "__main__":
    main()
