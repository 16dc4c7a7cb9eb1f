"""Compression quality bars of issue 7, measured side by side in one run.

Full presets (counted, not trained): MACs of the x3d_s / mobile_2d students against the
i3d_wav2vec teacher, and the file size of x3d_s after 50% MAC pruning and ONNX Runtime INT8
against the teacher's fp32 weights. Tiny presets (trained here on synthetic clips): teacher
trained with syncopt train, x3d_s distilled from it, pruned to 50% of its MACs with a KD
fine-tune, then INT8 (ORT); ORT INT8 vs fp32 latency at batch 1 for x3d_s and mobile_2d.

    .venv/bin/python benchmarks/bench_compress.py --clips 200 --epochs 5
writes benchmarks/results/compress.json (run directories under runs/bench_compress, reused).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import syncopt
from syncopt.atomic import atomic_path
from syncopt.compress.common import state_bytes
from syncopt.compress.distill import DistillConfig, distill
from syncopt.compress.prune import PruneConfig, prune
from syncopt.compress.quantize import QuantizeConfig, _ort, calibration_set, quantize
from syncopt.complexity import count_macs, count_params


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
    model = syncopt.compress.prune.load_model(work / "full_x3d_s_pruned")
    config = QuantizeConfig(calibration_clips=4, frames=25)
    _, int8 = _ort(model, calibration_set(model.spec, config), config, work / "full_x3d_s_int8")
    size = int8.path.stat().st_size
    rows["x3d_s_pruned_int8"] = {"macs": pr.pruned.macs, "macs_ratio": pr.pruned.macs / t_macs,
                                 "onnx_int8_bytes": size, "size_ratio": size / t_bytes}
    return rows


def tiny(work: Path, clips: int, epochs: int) -> dict:
    kd = distill(DistillConfig(model="x3d_s", teacher="i3d_wav2vec", train_clips=clips, val_clips=100, epochs=epochs,
                               teacher_epochs=epochs, workers=2), work / "distill")
    pr = prune(PruneConfig(model="x3d_s", macs=0.5, steps=1, epochs=2, train_clips=clips, val_clips=100, workers=2),
               work / "prune", source=str(work / "distill"))
    q = quantize(str(work / "prune"), QuantizeConfig(calibration_clips=32, eval_clips=100), work / "int8")
    mobile = quantize("mobile_2d", QuantizeConfig(calibration_clips=8, eval_clips=4), work / "int8_mobile")
    return {
        "distill": {"teacher": kd.teacher.model_dump(), "student": kd.student.model_dump(),
                    "accuracy_ratio": kd.accuracy_ratio, "teacher_source": kd.teacher_source,
                    "wall_time_s": kd.wall_time_s},
        "prune": {"macs_ratio": pr.macs_ratio, "params_ratio": pr.params_ratio,
                  "accuracy_before": pr.original.offset_accuracy, "accuracy_after": pr.pruned.offset_accuracy,
                  "accuracy_drop_points": pr.accuracy_drop},
        "int8_ort": q.model_dump(exclude={"config"}),
        "ort_speed_mobile_2d_untrained": {"fp32_ms": mobile.fp32_latency_ms, "int8_ms": mobile.int8_latency_ms,
                                          "speedup": mobile.speedup},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--work", default="runs/bench_compress")
    parser.add_argument("--out", default="benchmarks/results/compress.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    work = Path(args.work)
    result = {"machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
              "tiny": tiny(work, args.clips, args.epochs), "full": full_presets(work)}
    result["wall_time_s"] = time.perf_counter() - t0
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
