"""The compression pipeline on real video (issue 19): distil the shipped real-video ``fcn_lips`` (full) into
the tiny lip student on unlabelled real clips, prune it, quantize it to INT8 (ONNX Runtime static QDQ and
OpenVINO NNCF), and score every stage on held-out real clips with known audio shifts, beside the
lip-geometry baseline; sizes, parameters, MACs and batch-1 speed of fp32 against INT8 per runtime,
timed side by side in one run.

Usage: python benchmarks/bench_real_compress.py --train /work/data/train.csv [--epochs 20]
       [--eval benchmarks/realclips/test.csv] [--dev benchmarks/realclips/dev.csv] [--out runs/real_compress]
Writes benchmarks/results/real_compress.json. Each stage is skipped when its output exists under --out
(delete it to redo it). The evaluation clips' sha256 must not appear among the training clips' (the script
refuses), and no choice is made on them: the quantizers' own checks use --dev.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from pathlib import Path

import torch

from syncopt.core.artifact import load_artifact
from syncopt.core.atomic import sha256_file
from syncopt.models.complexity import count_macs, count_params
from syncopt.compress.common import state_bytes
from syncopt.data.datasets import read_manifest
from syncopt.core.formats import artifact_bytes
from syncopt.core.log import status
from syncopt.models.registry import create
from syncopt.analysis.shift_eval import (artifact_scorer, baseline_scorer, evaluate_data, format_report, model_scorer,
                                         torch_run)
from syncopt.models.sources import shipped_weights

from results_io import write_results

HERE = Path(__file__).parent


def stages(args) -> dict[str, Path]:
    """Run (or reuse) distill -> prune -> quantize (ort, openvino); the paths of what they wrote."""
    from syncopt.compress.distill import DistillConfig, distill
    from syncopt.compress.prune import PruneConfig, prune
    from syncopt.compress.quantize import QuantizeConfig, quantize

    out = Path(args.out)
    kd, pruned, int8 = out / "kd", out / "pruned", out / "int8"
    if not (kd / "report.json").is_file():
        distill(DistillConfig(model="fcn_lips", preset="tiny", teacher="fcn_lips", teacher_preset="full",
                              teacher_weights="shipped", data=args.train, epochs=args.epochs, batch_size=args.batch_size,
                              hard=args.hard, seed=args.seed, window=40), kd)
    if not (pruned / "report.json").is_file():
        prune(PruneConfig(model="fcn_lips", data=args.train, macs=args.macs, steps=args.prune_steps,
                          epochs=args.prune_epochs, final_epochs=args.prune_epochs, batch_size=args.batch_size,
                          seed=args.seed, window=40), pruned, source=str(kd))
    for method in ("ort", "openvino"):
        if not (int8 / f"fcn_lips_tiny_int8_{method}.report.json").is_file():
            quantize(pruned, QuantizeConfig(method=method, calibration=args.calibration, calibration_data=args.train,
                                            calibration_clips=args.calibration_clips, eval_data=args.dev,
                                            fallback="auto" if method == "ort" else "none"), int8)
    return {"kd": kd, "pruned": pruned, "int8": int8}


def speeds(models: dict, artifacts: dict, frames: list[int], runs: int) -> dict:
    """Median batch-1 ms at each clip length, one thread, every model and artifact timed side by side."""
    from syncopt.core.timing import interleaved_times
    from syncopt.runtimes import load

    torch.set_num_threads(1)
    sessions = {name: load(path, threads=1).run for name, path in artifacts.items()}
    runners = {name: torch_run(m) for name, m in models.items()} | sessions
    result = {}
    for t in frames:
        spec = next(iter(models.values())).spec
        feeds = {k: v.numpy() for k, v in spec.example_inputs(T=t, batch=1, seed=0).items()}
        calls = {name: functools.partial(run, feeds) for name, run in runners.items()}
        times = interleaved_times(calls, runs, warmup=3)
        result[str(t)] = {name: 1000 * statistics.median(v) for name, v in times.items()}
        status(f"T={t}: " + ", ".join(f"{n} {ms:.2f} ms" for n, ms in result[str(t)].items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="in-sync training videos: a folder or manifest .csv")
    parser.add_argument("--eval", default=str(HERE / "realclips" / "test.csv"))
    parser.add_argument("--dev", default=str(HERE / "realclips" / "dev.csv"))
    parser.add_argument("--out", default="runs/real_compress")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hard", type=float, default=0.0, help="label-loss weight (0: the teacher's soft targets only)")
    parser.add_argument("--macs", type=float, default=0.5)
    parser.add_argument("--prune-steps", type=int, default=2)
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--calibration", default="percentile")
    parser.add_argument("--calibration-clips", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shifts", default="-10,-5,0,5,10")
    parser.add_argument("--contexts", default="25,50,full")
    parser.add_argument("--speed-frames", default="25,250")
    parser.add_argument("--speed-runs", type=int, default=40)
    args = parser.parse_args()

    train_sha = {sha256_file(p) for p in dict.fromkeys(p for p, _ in read_manifest(args.train))}
    for name in (args.eval, args.dev):
        listed = {sha256_file(p): p.name for p, _ in read_manifest(name)}
        if overlap := set(listed) & train_sha:
            raise SystemExit(f"clips of {name} used in training: {sorted(listed[h] for h in overlap)}")

    paths = stages(args)
    teacher_weights = shipped_weights("fcn_lips", "full")
    teacher = create("fcn_lips", "full", weights=teacher_weights)
    student = create("fcn_lips", "tiny", weights=paths["kd"] / "model.safetensors")
    pruned = create("fcn_lips", "tiny", weights=paths["pruned"] / "model.safetensors")
    int8 = paths["int8"]
    artifacts = {"pruned fp32 ONNX (onnxruntime)": int8 / "fcn_lips_tiny_fp32.onnx",
                 "pruned INT8 ONNX (onnxruntime)": int8 / "fcn_lips_tiny_int8.onnx",
                 "pruned fp32 IR (openvino)": int8 / "fcn_lips_tiny_fp32.openvino",
                 "pruned INT8 IR (openvino)": int8 / "fcn_lips_tiny_int8.openvino"}

    scorers = {"lip-geometry baseline": baseline_scorer}
    for name, model in (("teacher fcn_lips full", teacher), ("student fcn_lips tiny (distilled)", student),
                        ("pruned student", pruned)):
        scorers[f"{name} [torch]"] = model_scorer(model)
    for name, path in artifacts.items():
        scorers[name] = artifact_scorer(load_artifact(path), threads=2)[1]
    shifts = [int(s) for s in args.shifts.split(",")]
    result = evaluate_data(args.eval, scorers, shifts, args.contexts.split(","), progress=status)
    print(format_report(result))

    def stats(model) -> dict:
        return {"params": count_params(model), "macs_per_25_frames": count_macs(model, model.spec),
                "fp32_bytes": state_bytes(model)}

    from syncopt.compress.distill import DistillReport
    from syncopt.compress.prune import PruneReport
    from syncopt.compress.quantize import QuantizeReport

    kd_report = DistillReport.model_validate_json((paths["kd"] / "report.json").read_text())
    prune_report = PruneReport.model_validate_json((paths["pruned"] / "report.json").read_text())
    quant = {m: QuantizeReport.model_validate_json((int8 / f"fcn_lips_tiny_int8_{m}.report.json").read_text())
             for m in ("ort", "openvino")}
    summary = {
        "train": {"data": args.train, "clips": len(train_sha), "eval": args.eval, "dev": args.dev,
                  "distill": {"epochs": kd_report.epochs_done, "hard": kd_report.config.hard,
                              "minutes": kd_report.train_time_s / 60, "teacher_source": kd_report.teacher_source},
                  "prune": {"macs_ratio": prune_report.macs_ratio, "params_ratio": prune_report.params_ratio,
                            "steps": prune_report.config.steps, "epochs": prune_report.config.epochs,
                            "final_epochs": prune_report.config.final_epochs},
                  "quantize_dev_checks": {m: {k: getattr(q, k) for k in (
                      "accuracy_drop", "offset_agreement", "min_embedding_cosine", "within_tolerance")}
                      | {"kept_float": q.float_ops} for m, q in quant.items()}},
        "models": {"teacher": stats(teacher), "student": stats(student), "pruned": stats(pruned)},
        "artifact_bytes": {name: artifact_bytes(path) for name, path in artifacts.items()},
        "accuracy": {name: {c: s.model_dump() for c, s in rep.by_context.items()}
                     for name, rep in result.scorers.items()},
        "accuracy_by_clip_25": {name: {clip: s.following_pm1 for clip, s in rep.by_clip.get("25", {}).items()}
                                for name, rep in result.scorers.items()},
        "clips": result.clip_sha256, "shifts": shifts,
    }
    speed_models = {"teacher fp32 (torch)": teacher, "student fp32 (torch)": student, "pruned fp32 (torch)": pruned}
    summary["speed_ms"] = speeds(speed_models, artifacts, [int(t) for t in args.speed_frames.split(",")],
                                 args.speed_runs)
    summary["speedup_int8_over_fp32"] = {
        t: {"onnxruntime": ms["pruned fp32 ONNX (onnxruntime)"] / ms["pruned INT8 ONNX (onnxruntime)"],
            "openvino": ms["pruned fp32 IR (openvino)"] / ms["pruned INT8 IR (openvino)"]}
        for t, ms in summary["speed_ms"].items()}
    print(write_results("real_compress", summary))


if __name__ == "__main__":
    main()
