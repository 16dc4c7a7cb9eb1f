"""Quality bar of issue 5: tiny FCN models trained by `syncopt train` within a time budget,
evaluated on the held-out synthetic test split.

Usage: python benchmarks/bench_train.py fcn [--budget 15] [--epochs 30] [--out runs/bench_fcn]
Writes benchmarks/results/train_<model>.json. Goals: offset accuracy >= 95% (±1 frame,
15-frame context) on constant clips; per-frame accuracy >= 90% on drifting/cut-in clips.
A finished run directory is reused (training resumes; nothing is retrained).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from syncopt.data.datasets import synth_dataset
from syncopt.training.evaluate import evaluate_dataset
from syncopt.models.registry import create
from syncopt.training.train import TrainConfig, train

from results_io import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--budget", type=float, default=15.0, help="training time budget in minutes")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--test-clips", type=int, default=400)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or f"runs/bench_{args.model}")
    report = train(TrainConfig(model=args.model, epochs=args.epochs, time_budget_min=args.budget), out)
    model = create(args.model, "tiny", weights=out / "model.safetensors")
    test = synth_dataset(model.spec, "test", args.test_clips, num_frames=75,
                         kinds={"constant": 0.6, "drift": 0.2, "cutin": 0.2}, workers=2)
    result = evaluate_dataset(model, test)
    summary = {
        "model": args.model, "preset": "tiny", "params": report.params, "epochs": report.epochs_done,
        "train_minutes": report.train_time_s / 60, "data_minutes": report.data_time_s / 60,
        "test_clips": args.test_clips, "test": result.model_dump(mode="json"),
        "goal_offset_acc_pm1_15": 0.95, "goal_per_frame_varying": 0.90,
        "meets_goals": result.context_accuracy_pm1[15] >= 0.95 and (result.per_frame_accuracy_varying or 0) >= 0.90,
    }
    path = write_results(f"train_{args.model}", summary)
    print(json.dumps({k: summary[k] for k in ("model", "epochs", "train_minutes", "meets_goals")}))
    print(f"acc@15 {result.context_accuracy[15]:.3f} ±1 {result.context_accuracy_pm1[15]:.3f}  per-frame "
          f"{result.per_frame_accuracy:.3f} varying {result.per_frame_accuracy_varying}  AUC {result.sync_auc}  "
          f"IoU {result.segment_iou}  -> {path}")


if __name__ == "__main__":
    main()
