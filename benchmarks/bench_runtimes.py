"""Issue 9's speed figures, each a ratio of contenders timed side by side in one run.

Usage: python benchmarks/bench_runtimes.py [--rounds 3] [--work runs/bench_runtimes] [--threads 2]

1. A 10 s clip (250 frames at 25 fps) through the students (x3d_s, mobile_2d; full presets) against
   the original windowed SyncNet procedure (syncnet_v2 full: every 5-frame window and its 20-step
   MFCC window through both towers, batch 20, then the ±15-frame distance search), all at the
   same offset range ±15, decoding included.
2. INT8 against fp32 per runtime (TFLite: onnx2tf integer_quant; ONNX Runtime: static QDQ from
   syncopt.compress.quantize with lower_conv3d, which runs a 3D student's convolutions as INT8 2D
   ones on frames, batch 1; ONNX Runtime's own 3D INT8 convolution is slower than its float one).
3. Student against teacher (i3d_wav2vec full), torch eager both, on a 2 s clip (the teacher's
   ~2.3 TFLOP per 10 s would not fit the run's time budget with repeats).
4. Achieved GFLOP/s (2 x MACs / median time) as a fraction of this CPU's fp32 peak,
   cores x 32 FLOP/cycle x clock: 32 = 2 FMA pipes x 8 fp32 lanes (256-bit AVX2) x 2 FLOP per FMA,
   the figure the issue prescribes; clock = the highest "cpu MHz" in /proc/cpuinfo.

The CPU may be shared with other jobs, so absolute times drift: every round runs each contender once,
in a rotated order, and a ratio is the median over rounds of the per-round ratio. Weights are
random (speed does not depend on their values). Exports are cached under --work.
Writes benchmarks/results/runtimes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from results_io import write_results

from syncopt.bench import interleaved_times, machine_info
from syncopt.complexity import count_macs
from syncopt.decode import decode_dense
from syncopt.registry import create
from syncopt.reference_models.syncnet import WINDOW_FRAMES, windowed_embeddings, windowed_offset

CLIP = 250  # 10 s at 25 fps
TEACHER_CLIP = 50
FLOP_PER_CYCLE = 32


@dataclass
class Contender:
    name: str
    model: str
    runtime: str
    precision: str
    frames: int
    macs: int
    run: Callable[[], object]


def interleaved(contenders: list[Contender], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each contender: one warm-up each, then ``rounds`` rotated rounds."""
    def progress(times: dict[str, list[float]]) -> None:
        print(f"  round {len(next(iter(times.values())))}/{rounds}: "
              + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)

    return interleaved_times({c.name: c.run for c in contenders}, rounds, on_round=progress)


def ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of slow/fast (rounds pair the two contenders' calls)."""
    return float(np.median(np.asarray(times[slow]) / np.asarray(times[fast])))


def dense_runner(session, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    """One pass of a dense model through a runtime session, then offset decoding, as syncopt sync does."""
    def run():
        out = session.run(feeds)
        return decode_dense(torch.from_numpy(out["offset_logits"][0]), torch.from_numpy(out["sync_prob"][0]))
    return run


def students(work: Path, threads: int) -> list[Contender]:
    from syncopt.bench import EagerSession
    from syncopt.export import export
    from syncopt.runtimes import load

    out = []
    for name in ("x3d_s", "mobile_2d"):
        net = create(name, "full")
        assert net.spec.max_offset == 15, f"{name} scores ±{net.spec.max_offset}, not ±15"
        feeds = {k: v.numpy() for k, v in net.spec.example_inputs(T=CLIP, seed=1).items()}
        macs = count_macs(net, net.spec, frames=CLIP)
        onnx = _cached(work / "artifacts" / f"{name}_full_fp32.onnx", lambda: export(net, "onnx", work / "artifacts"))
        out.append(Contender(f"{name} fp32 onnxruntime", name, "onnxruntime", "fp32", CLIP, macs,
                             dense_runner(load(onnx, threads=threads), feeds)))
        int8 = _cached(work / "int8_lowered" / f"{name}_full_int8.onnx", lambda: _quantize(onnx, work / "int8_lowered"))
        out.append(Contender(f"{name} int8 onnxruntime", name, "onnxruntime", "int8", CLIP, macs,
                             dense_runner(load(int8, threads=threads), feeds)))
        if name == "mobile_2d":  # x3d_s eager (depthwise Conv3d) takes ~1 min per 10 s clip here: (3) covers it
            out.append(Contender(f"{name} fp32 torch", name, "torch", "fp32", CLIP, macs,
                                 dense_runner(EagerSession(net, threads), feeds)))
            for precision in ("fp32", "int8"):
                path = work / "artifacts" / f"{name}_full_{precision}_T{CLIP}.tflite"
                art = _cached(path, lambda: export(net, "tflite", work / "artifacts", precision, frames=CLIP,
                                                   calibration_clips=8))
                out.append(Contender(f"{name} {precision} tflite", name, "tflite", precision, CLIP, macs,
                                     dense_runner(load(art, threads=threads), feeds)))
    return out


def _quantize(onnx, out: Path):
    """ONNX Runtime static QDQ INT8 (syncopt.compress.quantize, its defaults but a small calibration/eval set,
    3D convolutions lowered)."""
    from syncopt.artifact import load_artifact
    from syncopt.compress.quantize import QuantizeConfig, quantize

    config = QuantizeConfig(method="ort", preset="full", calibration_clips=8, eval_clips=4, frames=50, speed_runs=1,
                            lower_conv3d=True)
    return load_artifact(quantize(onnx.path, config, out).artifact)


def _cached(path: Path, make: Callable[[], object]):
    from syncopt.artifact import load_artifact

    return load_artifact(path) if path.is_file() else make()


def syncnet_baseline() -> Contender:
    """The published procedure on a 10 s clip: windowed towers at batch 20, then the distance search."""
    net = create("syncnet_v2", "full")
    feeds = net.spec.example_inputs(T=CLIP, seed=1)
    video, mfcc = feeds["video"], feeds["audio"]
    windows = CLIP - WINDOW_FRAMES  # the published loop stops one window short (see windowed_embeddings)
    macs = count_macs(net, net.spec, frames=WINDOW_FRAMES) * windows

    def run():
        return windowed_offset(*windowed_embeddings(net, video, mfcc, batch_size=20), vshift=15)

    return Contender("syncnet_v2 windowed torch", "syncnet_v2", "torch", "fp32", CLIP, macs, run)


def teacher_group(threads: int) -> list[Contender]:
    from syncopt.bench import EagerSession

    out = []
    for name in ("i3d_wav2vec", "x3d_s", "mobile_2d"):
        net = create(name, "full")
        feeds = {k: v.numpy() for k, v in net.spec.example_inputs(T=TEACHER_CLIP, seed=2).items()}
        out.append(Contender(f"{name} fp32 torch @2s", name, "torch", "fp32", TEACHER_CLIP,
                             count_macs(net, net.spec, frames=TEACHER_CLIP),
                             dense_runner(EagerSession(net, threads), feeds)))
    return out


def summarise(group: list[Contender], times: dict[str, list[float]], peak: float) -> dict[str, dict]:
    rows = {}
    for c in group:
        median = float(np.median(times[c.name]))
        gflops = 2 * c.macs / median / 1e9
        rows[c.name] = dict(model=c.model, preset="full", runtime=c.runtime, precision=c.precision, frames=c.frames,
                            gmacs=c.macs / 1e9, times_s=times[c.name], median_s=median,
                            video_s_per_s=c.frames / 25 / median, gflops=gflops, fraction_of_peak=gflops / peak)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--work", default="runs/bench_runtimes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    machine = machine_info()
    peak = (machine["cores"] or 1) * FLOP_PER_CYCLE * (machine["mhz"] or 0) / 1000  # GFLOP/s
    start = time.perf_counter()

    print(f"(1, 2) 10 s clip: students vs windowed SyncNet, INT8 vs fp32 — {args.rounds} interleaved rounds")
    clip_group = [syncnet_baseline(), *students(work, args.threads)]
    clip_times = interleaved(clip_group, args.rounds)
    print(f"(3) 2 s clip: teacher vs students, torch eager — {args.rounds} interleaved rounds")
    teacher = teacher_group(args.threads)
    teacher_times = interleaved(teacher, args.rounds)

    base = "syncnet_v2 windowed torch"
    speedups = {c.name: ratio(clip_times, base, c.name) for c in clip_group[1:]}
    int8 = {"tflite (mobile_2d)": ratio(clip_times, "mobile_2d fp32 tflite", "mobile_2d int8 tflite"),
            **{f"onnxruntime ({m})": ratio(clip_times, f"{m} fp32 onnxruntime", f"{m} int8 onnxruntime")
               for m in ("x3d_s", "mobile_2d")}}
    vs_teacher = {c.name: ratio(teacher_times, "i3d_wav2vec fp32 torch @2s", c.name) for c in teacher[1:]}
    rows = summarise(clip_group, clip_times, peak) | summarise(teacher, teacher_times, peak)
    result = {
        "machine": machine,
        "threads": args.threads,
        "peak_gflops_fp32": peak,
        "peak_formula": f"{machine['cores']} cores x {FLOP_PER_CYCLE} FLOP/cycle (2 FMA x 8 fp32 lanes x 2) x "
                        f"{machine['mhz']} MHz",
        "presets": "full for every model (syncnet_v2, x3d_s, mobile_2d, i3d_wav2vec); random weights",
        "clip": f"{CLIP} frames (10 s) for (1), (2), (4); {TEACHER_CLIP} frames (2 s) for (3)",
        "offset_range": "±15 frames for every model",
        "method": f"{args.rounds} interleaved rounds (rotated order) after one warm-up each; ratio = median over "
                  "rounds of the per-round ratio (load_average_1_5_15min says how busy the CPU was)",
        "contenders": rows,
        "speedup_vs_windowed_syncnet": speedups,
        "int8_vs_fp32": int8,
        "student_speedup_vs_teacher": vs_teacher,
        "goals": {
            "x3d_s INT8 onnxruntime >= 20x windowed SyncNet": speedups["x3d_s int8 onnxruntime"] >= 20,
            "mobile_2d INT8 >= 100x windowed SyncNet (TFLite)": speedups["mobile_2d int8 tflite"] >= 100,
            "mobile_2d INT8 >= 100x windowed SyncNet (onnxruntime)": speedups["mobile_2d int8 onnxruntime"] >= 100,
            "dense 3D teacher >= 50% of peak": rows["i3d_wav2vec fp32 torch @2s"]["fraction_of_peak"] >= 0.5,
        },
        "wall_time_s": time.perf_counter() - start,
    }
    path = write_results("runtimes", result)
    print(json.dumps({k: result[k] for k in ("speedup_vs_windowed_syncnet", "int8_vs_fp32",
                                             "student_speedup_vs_teacher", "goals")}, indent=2))
    for name, row in rows.items():
        print(f"{name:32s} {row['median_s']:8.3f} s  {row['gflops']:7.1f} GFLOP/s  "
              f"{row['fraction_of_peak']:6.1%} of {peak:.0f}  {row['video_s_per_s']:8.1f}x real time")
    print(f"-> {path} ({result['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
