"""Compression quality bars of issue 7, measured side by side in one run.

Full presets (counted, not trained): MACs of the x3d_s / mobile_2d students against the
i3d_wav2vec teacher, and the file size of x3d_s after 50% MAC pruning and ONNX Runtime INT8
against the teacher's fp32 weights. Tiny presets (trained here on synthetic clips): teacher
i3d_wav2vec trained with syncopt train (1000 clips x 20 epochs: the size that trains it well,
see benchmarks/results/train_i3d_wav2vec.json), x3d_s distilled from it for as long, pruned to
50% of its MACs in two rounds with KD fine-tunes from the unpruned student plus a recovery
fine-tune, then INT8 (ORT); ORT INT8 vs fp32 latency at batch 1 for x3d_s and mobile_2d.
Accuracy drops are measured on 400 held-out clips (one clip is 0.25 points).

    .venv/bin/python benchmarks/bench_compress.py          # about 20 min on an idle 2-core machine
writes benchmarks/results/compress.json (run directories under runs/bench_compress/c<clips>_e<epochs>,
reused: the teacher and finished runs are cached there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from results_io import write_results

import syncopt
from syncopt.models.sources import resolve
from syncopt.compress.common import state_bytes
from syncopt.compress.distill import DistillConfig, distill
from syncopt.compress.prune import PruneConfig, prune
from syncopt.compress.quantize import QuantizeConfig, calibration_set, quantize
from syncopt.compress.quantize.ort import ort_int8
from syncopt.models.complexity import count_macs, count_params


def full_presets(work: Path) -> dict:
    """Counted MAC and size ratios of the full presets (pruning without fine-tuning: counts only)."""
    teacher = syncopt.create("i3d_wav2vec", "full")
    t_macs, t_bytes = count_macs(teacher, teacher.spec), state_bytes(teacher)
    del teacher
    rows = {"teacher": {"model": "i3d_wav2vec", "macs": t_macs, "fp32_bytes": t_bytes}}
    for name in ("x3d_s", "mobile_2d"):
        m = syncopt.create(name, "full")
        rows[name] = {"macs": count_macs(m, m.spec), "params": count_params(m), "fp32_bytes": state_bytes(m),
                      "macs_ratio": count_macs(m, m.spec) / t_macs}
    pr = prune(PruneConfig(model="x3d_s", preset="full", macs=0.5, val_clips=2, clip_frames=25, epochs=0),
               work / "full_x3d_s_pruned")
    model = resolve(work / "full_x3d_s_pruned").build()
    config = QuantizeConfig(calibration_clips=4, frames=25)
    _, int8 = ort_int8(model, calibration_set(model.spec, config), config, work / "full_x3d_s_int8")
    size = int8.path.stat().st_size
    rows["x3d_s_pruned_int8"] = {"macs": pr.pruned.macs, "macs_ratio": pr.pruned.macs / t_macs,
                                 "onnx_int8_bytes": size, "size_ratio": size / t_bytes}
    return rows


def tiny(work: Path, clips: int, epochs: int, eval_clips: int) -> dict:
    kd = distill(DistillConfig(model="x3d_s", teacher="i3d_wav2vec", train_clips=clips, val_clips=eval_clips,
                               epochs=epochs, teacher_epochs=epochs, workers=2), work / "distill")
    pr = prune(PruneConfig(model="x3d_s", macs=0.5, steps=2, epochs=3, final_epochs=4, train_clips=clips,
                           val_clips=eval_clips, workers=2), work / "prune", source=str(work / "distill"))
    q = quantize(str(work / "prune"), QuantizeConfig(eval_clips=eval_clips), work / "int8")
    mobile = quantize("mobile_2d", QuantizeConfig(calibration_clips=8, eval_clips=4), work / "int8_mobile")
    return {
        "distill": {"teacher": kd.teacher.model_dump(), "student": kd.student.model_dump(),
                    "accuracy_ratio": kd.accuracy_ratio, "teacher_source": kd.teacher_source,
                    "wall_time_s": kd.wall_time_s},
        "prune": {"macs_ratio": pr.macs_ratio, "params_ratio": pr.params_ratio,
                  "accuracy_before": pr.original.offset_accuracy, "accuracy_after": pr.pruned.offset_accuracy,
                  "accuracy_drop_points": pr.accuracy_drop,
                  "per_frame_before": pr.original.per_frame_accuracy, "per_frame_after": pr.pruned.per_frame_accuracy,
                  "per_frame_drop_points": 100 * (pr.original.per_frame_accuracy - pr.pruned.per_frame_accuracy),
                  "procedure": pr.config.model_dump(include={"criterion", "steps", "epochs", "final_epochs", "kd",
                                                             "lr", "train_clips", "val_clips"}),
                  "wall_time_s": pr.wall_time_s},
        "int8_ort": q.model_dump(exclude={"config"}),
        "ort_speed_mobile_2d_untrained": {"fp32_ms": mobile.fp32_latency_ms, "int8_ms": mobile.int8_latency_ms,
                                          "speedup": mobile.speedup},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000, help="synthetic training clips (teacher, student, fine-tune)")
    parser.add_argument("--epochs", type=int, default=20, help="teacher and student epochs")
    parser.add_argument("--eval-clips", type=int, default=400, help="held-out clips for the accuracy drops")
    parser.add_argument("--work", default=None, help="run directories (default runs/bench_compress/c<clips>_e<epochs>)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    work = Path(args.work or f"runs/bench_compress/c{args.clips}_e{args.epochs}")
    result = {"threads": torch.get_num_threads(), "clips": args.clips, "epochs": args.epochs,
              "tiny": tiny(work, args.clips, args.epochs, args.eval_clips), "full": full_presets(work)}
    result["wall_time_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=2))
    print(f"wrote {write_results('compress', result)}")


if __name__ == "__main__":
    main()
