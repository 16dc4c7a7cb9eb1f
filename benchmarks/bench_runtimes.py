"""Issue 9's speed figures, each a ratio of contenders timed side by side in one run.

Usage: python benchmarks/bench_runtimes.py [--rounds 3] [--work runs/bench_runtimes] [--threads 2]

1. A 10 s clip (250 frames at 25 fps) through the students (x3d_s, mobile_2d; full presets) against
   the original windowed SyncNet procedure (syncnet_v2 full: every 5-frame window and its 20-step
   MFCC window through both towers, batch 20, then the ±15-frame distance search), all at the
   same offset range ±15, decoding included.
   OpenVINO runs both students in f32, bf16 and NNCF INT8, each artifact checked against torch by
   the parity contract first (so a speed-up counts at a precision that passes its tolerance).
2. INT8 against fp32 per runtime (TFLite: onnx2tf integer_quant; ONNX Runtime: static QDQ from
   syncopt.compress.quantize with lower_conv3d, which runs a 3D student's convolutions as INT8 2D
   ones on frames, batch 1; ONNX Runtime's own 3D INT8 convolution is slower than its float one;
   OpenVINO: NNCF INT8 against OpenVINO f32). TFLite x3d_s is left out: onnx2tf's INT8
   calibration of full x3d_s took 14 min here (docs/export.md).
   OpenVINO levers, beside them: the IR compiled with its dynamic T (the session compiles per
   input shape), the THROUGHPUT hint, and NNCF's MIXED preset (asymmetric activations).
3. Student against teacher (i3d_wav2vec full), torch eager both, on a 2 s clip (the teacher's
   ~2.3 TFLOP per 10 s would not fit the run's time budget with repeats).
4. Achieved GFLOP/s (2 x MACs / median time) as a fraction of this CPU's peak at the contender's
   precision, cores x FLOP/cycle x clock (clock: the highest "cpu MHz" in /proc/cpuinfo). FLOP per
   core and cycle come from the widest unit /proc/cpuinfo's flags list for that precision
   (PEAK_TABLE): fp32 64 with AVX-512 (2 FMA pipes x 16 lanes x 2 FLOP), 32 with AVX2; bf16 1024
   with AMX (Intel: a 4th Gen Xeon core's TMUL does 1024 bf16 or 2048 int8 operations per cycle),
   128 with AVX-512 BF16 (2 pipes x 32 VDPBF16PS products x 2); int8 2048 with AMX, 256 with
   AVX-512 VNNI (2 pipes x 64 VPDPBUSD products x 2). AMD Zen 4 (family 19h) runs a 512-bit
   instruction on 256-bit units over two cycles (AMD, Software Optimization Guide for Family 19h
   Processors): its AVX-512 rows count half. The fraction against the fp32 peak is kept beside it.

The CPU may be shared with other jobs, so absolute times drift: every round runs each contender for
at least ROUND_SECONDS (the median of its calls; the windowed SyncNet's one call takes 7 s), in a rotated
order, and a ratio is the median over rounds of the per-round ratio. With one call per round, a 0.11-0.15 s
contender swung by a third between rounds of one idle run (x3d_s INT8: 49x-74x the windowed SyncNet). Weights are
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
from results_io import cpu, write_results

from syncopt.core.timing import interleaved_times, machine_info
from syncopt.models.complexity import count_macs
from syncopt.models.decode import decode_dense
from syncopt.models.registry import create
from syncopt.models.syncnet import WINDOW_FRAMES, windowed_embeddings, windowed_offset

CLIP = 250  # 10 s at 25 fps
ROUND_SECONDS = 1.0
TEACHER_CLIP = 50
# FLOP (int8: operations) per core and cycle at each precision: the first row whose /proc/cpuinfo flag the
# CPU has (module docstring, 4); a precision with no row runs at the fp32 rate
PEAK_TABLE = {
    "fp32": [("avx512f", 64, "AVX-512: 2 FMA pipes x 16 fp32 lanes x 2 FLOP"),
             ("fma", 32, "AVX2: 2 FMA pipes x 8 fp32 lanes x 2 FLOP"),
             ("sse2", 8, "SSE2: 4 fp32 lanes x 2 FLOP (a multiply and an add)")],
    "bf16": [("amx_bf16", 1024, "AMX TMUL: 1024 bf16 operations (Intel, 4th Gen Xeon)"),
             ("avx512_bf16", 128, "AVX-512 BF16: 2 pipes x 32 bf16 products (VDPBF16PS) x 2")],
    "int8": [("amx_int8", 2048, "AMX TMUL: 2048 int8 operations (Intel, 4th Gen Xeon)"),
             ("avx512_vnni", 256, "AVX-512 VNNI: 2 pipes x 64 int8 products (VPDPBUSD) x 2"),
             ("avx_vnni", 128, "AVX-VNNI: 2 pipes x 32 int8 products (VPDPBUSD) x 2")],
}
OPENVINO_CALIBRATION = dict(calibration_clips=16, frames=50)


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
    """Seconds per call of each contender: one warm-up each, then ``rounds`` rotated rounds of at least
    :data:`ROUND_SECONDS` each (the median call of a round)."""
    def progress(times: dict[str, list[float]]) -> None:
        print(f"  round {len(next(iter(times.values())))}/{rounds}: "
              + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)

    return interleaved_times({c.name: c.run for c in contenders}, rounds, on_round=progress, min_seconds=ROUND_SECONDS)


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
    from syncopt.runtimes.torch_runtime import TorchSession
    from syncopt.export import export
    from syncopt.runtimes import load

    out = []
    for name in ("x3d_s", "mobile_2d"):
        torch.manual_seed(0)  # the same weights every run: artifacts cached by an earlier run still match them
        net = create(name, "full")
        out += openvino_group(net, work, threads)
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
                                 dense_runner(TorchSession.of(net, threads), feeds)))
            for precision in ("fp32", "int8"):
                path = work / "artifacts" / f"{name}_full_{precision}_T{CLIP}.tflite"
                art = _cached(path, lambda: export(net, "tflite", work / "artifacts", precision, frames=CLIP,
                                                   calibration_clips=8))
                out.append(Contender(f"{name} {precision} tflite", name, "tflite", precision, CLIP, macs,
                                     dense_runner(load(art, threads=threads), feeds)))
    return out


def openvino_group(net, work: Path, threads: int) -> list[Contender]:
    """A student on OpenVINO: f32, bf16 and NNCF INT8 through syncopt's session, each artifact
    parity-checked first; then the levers (dynamic T, THROUGHPUT hint, NNCF MIXED preset), each run
    through the same session code."""
    import openvino as ov

    from syncopt.export import export
    from syncopt.export.openvino import XML
    from syncopt.parity import check_parity
    from syncopt.runtimes import load

    name, spec = net.spec.name, net.spec
    feeds = {k: v.numpy() for k, v in spec.example_inputs(T=CLIP, seed=1).items()}
    macs = count_macs(net, spec, frames=CLIP)
    folder = work / "openvino"
    out, arts = [], {}
    for precision in ("fp32", "bf16", "int8"):
        options = OPENVINO_CALIBRATION if precision == "int8" else {}
        art = arts[precision] = _cached(folder / f"{name}_full_{precision}.openvino.json",
                                        lambda: export(net, "openvino", folder, precision, **options))
        report = check_parity(art.path, frames=(0,), synth_clips=2)
        PARITY[f"{name} {precision} openvino"] = {"passed": report.passed, "failures": report.failures,
                                                   "decisions": report.decisions}
        out.append(Contender(f"{name} {precision} openvino", name, "openvino", precision, CLIP, macs,
                             dense_runner(load(art, threads=threads), feeds)))
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    levers = {"dynamic T": [("fp32", {"INFERENCE_PRECISION_HINT": "f32"}), ("bf16", {"INFERENCE_PRECISION_HINT": "bf16"}),
                            ("int8", {"INFERENCE_PRECISION_HINT": "f32"})],
              "THROUGHPUT hint": [("bf16", {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "THROUGHPUT"})]}
    for lever, variants in levers.items():
        for precision, extra in variants:
            graph = core.read_model(str(folder / f"{name}_full_{precision}.openvino" / XML))
            if lever != "dynamic T":
                graph.reshape({k: list(v.shape) for k, v in feeds.items()})
            out.append(_lever(f"{name} {precision} openvino, {lever}", arts[precision], threads, precision, macs,
                              core.compile_model(graph, "CPU", config | extra), feeds))
    from syncopt.export.openvino_int8 import nncf_int8
    from syncopt.data.datasets import synth_dataset

    calib = synth_dataset(spec, "train", OPENVINO_CALIBRATION["calibration_clips"], OPENVINO_CALIBRATION["frames"])
    mixed, _ = nncf_int8(core.read_model(str(folder / f"{name}_full_fp32.openvino" / XML)), spec, calib,
                         min_cosine=None, preset="MIXED")
    mixed.reshape({k: list(v.shape) for k, v in feeds.items()})
    out.append(_lever(f"{name} int8 openvino, MIXED preset", arts["int8"], threads, "int8", macs,
                      core.compile_model(mixed, "CPU", config | {"INFERENCE_PRECISION_HINT": "f32"}), feeds))
    return out


def _lever(label: str, art, threads: int, precision: str, macs: int, compiled, feeds) -> Contender:
    """A lever: syncopt's session for ``art`` (same input checks and copies) running ``compiled`` instead."""
    from syncopt.runtimes import load

    session = load(art, threads=threads)
    fixed = (compiled.create_infer_request(), [compiled.output(n) for n in session.spec.output_names])
    session._request = lambda _feeds: fixed
    return Contender(label, session.spec.name, "openvino", precision, CLIP, macs, dense_runner(session, feeds))


PARITY: dict[str, dict] = {}  # openvino artifact -> its parity verdict (filled by openvino_group)


def _quantize(onnx, out: Path):
    """ONNX Runtime static QDQ INT8 (syncopt.compress.quantize, its defaults but a small calibration/eval set,
    3D convolutions lowered)."""
    from syncopt.core.artifact import load_artifact
    from syncopt.compress.quantize import QuantizeConfig, quantize

    config = QuantizeConfig(method="ort", preset="full", calibration_clips=8, eval_clips=4, frames=50, speed_runs=1,
                            lower_conv3d=True)
    return load_artifact(quantize(onnx.path, config, out).artifact)


def _cached(path: Path, make: Callable[[], object]):
    from syncopt.core.artifact import load_artifact

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
    from syncopt.runtimes.torch_runtime import TorchSession

    out = []
    for name in ("i3d_wav2vec", "x3d_s", "mobile_2d"):
        net = create(name, "full")
        feeds = {k: v.numpy() for k, v in net.spec.example_inputs(T=TEACHER_CLIP, seed=2).items()}
        out.append(Contender(f"{name} fp32 torch @2s", name, "torch", "fp32", TEACHER_CLIP,
                             count_macs(net, net.spec, frames=TEACHER_CLIP),
                             dense_runner(TorchSession.of(net, threads), feeds)))
    return out


def peak_per_cycle(cpu: dict) -> dict[str, tuple[int, str]]:
    """FLOP (int8: operations) per core and cycle at each precision, with the reason, from PEAK_TABLE and
    ``cpu`` (:func:`results_io.cpu`)."""
    flags, zen4 = set(cpu.get("cpu_isa", ())), cpu.get("cpu_family") == "AuthenticAMD 25"
    out = {}
    for precision, rows in PEAK_TABLE.items():  # fp32 first: the rate of a precision with no unit
        row = next((r for r in rows if r[0] in flags), None)
        if row is None:
            out[precision] = (out["fp32"][0], f"no {precision} unit: the fp32 rate")
            continue
        flag, per_cycle, why = row
        if zen4 and flag.startswith("avx512"):
            per_cycle, why = per_cycle // 2, f"{why}, halved: Zen 4 runs 512-bit instructions over two cycles"
        out[precision] = (per_cycle, why)
    return out


def summarise(group: list[Contender], times: dict[str, list[float]], peaks: dict[str, float]) -> dict[str, dict]:
    rows = {}
    for c in group:
        median = float(np.median(times[c.name]))
        gflops = 2 * c.macs / median / 1e9
        rows[c.name] = dict(model=c.model, preset="full", runtime=c.runtime, precision=c.precision, frames=c.frames,
                            gmacs=c.macs / 1e9, times_s=times[c.name], median_s=median,
                            video_s_per_s=c.frames / 25 / median, gflops=gflops,
                            fraction_of_peak=gflops / peaks[c.precision], fraction_of_fp32_peak=gflops / peaks["fp32"])
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
    per_cycle = peak_per_cycle(cpu())
    peaks = {p: (machine["cores"] or 1) * f * (machine["mhz"] or 0) / 1000 for p, (f, _) in per_cycle.items()}  # GFLOP/s
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
            **{f"{r} ({m})": ratio(clip_times, f"{m} fp32 {r}", f"{m} int8 {r}")
               for r in ("onnxruntime", "openvino") for m in ("x3d_s", "mobile_2d")}}
    levers = {c.name: ratio(clip_times, c.name.split(",")[0], c.name) for c in clip_group if ", " in c.name}
    passing = [p for p in ("fp32", "bf16", "int8") if PARITY[f"x3d_s {p} openvino"]["passed"]]
    best_x3d = max((speedups[f"x3d_s {p} openvino"] for p in passing), default=0.0)
    vs_teacher = {c.name: ratio(teacher_times, "i3d_wav2vec fp32 torch @2s", c.name) for c in teacher[1:]}
    rows = summarise(clip_group, clip_times, peaks) | summarise(teacher, teacher_times, peaks)
    result = {
        "platform": machine,
        "threads": args.threads,
        "peak_gflops": peaks,
        "peak_formula": {p: f"{machine['cores']} cores x {f} per cycle ({why}) x {machine['mhz']} MHz (the highest "
                            "'cpu MHz' in /proc/cpuinfo; a KVM guest reports the base clock, not the boost)"
                         for p, (f, why) in per_cycle.items()},
        "presets": "full for every model (syncnet_v2, x3d_s, mobile_2d, i3d_wav2vec); random weights",
        "clip": f"{CLIP} frames (10 s) for (1), (2), (4); {TEACHER_CLIP} frames (2 s) for (3)",
        "offset_range": "±15 frames for every model",
        "method": f"{args.rounds} interleaved rounds (rotated order) after one warm-up each; ratio = median over "
                  "rounds of the per-round ratio (load_average_1_5_15min says how busy the CPU was)",
        "contenders": rows,
        "speedup_vs_windowed_syncnet": speedups,
        "int8_vs_fp32": int8,
        "openvino_levers": levers,
        "openvino_levers_note": "speed of each lever over the session's own setting (static T, LATENCY hint, NNCF "
                                "PERFORMANCE preset) at the same precision; below 1 the lever is slower",
        "openvino_parity": PARITY,
        "student_speedup_vs_teacher": vs_teacher,
        "goals": {
            "x3d_s INT8 onnxruntime >= 20x windowed SyncNet": speedups["x3d_s int8 onnxruntime"] >= 20,
            f"x3d_s OpenVINO >= 60x windowed SyncNet at a precision passing parity ({', '.join(passing)}: "
            f"best {best_x3d:.1f}x)": best_x3d >= 60,
            **{f"{m} NNCF INT8 >= 1.5x OpenVINO f32": int8[f"openvino ({m})"] >= 1.5 for m in ("x3d_s", "mobile_2d")},
            "mobile_2d INT8 >= 100x windowed SyncNet (TFLite)": speedups["mobile_2d int8 tflite"] >= 100,
            "mobile_2d INT8 >= 100x windowed SyncNet (onnxruntime)": speedups["mobile_2d int8 onnxruntime"] >= 100,
            "dense 3D teacher >= 50% of issue 9's peak (32 fp32 FLOP per core and cycle)":
                rows["i3d_wav2vec fp32 torch @2s"]["gflops"] >= 0.5 * peaks["fp32"] * 32 / per_cycle["fp32"][0],
        },
        "wall_time_s": time.perf_counter() - start,
    }
    path = write_results("runtimes", result)
    print(json.dumps({k: result[k] for k in ("speedup_vs_windowed_syncnet", "int8_vs_fp32", "openvino_levers",
                                             "student_speedup_vs_teacher", "goals")}, indent=2))
    for name, row in rows.items():
        print(f"{name:44s} {row['median_s']:8.3f} s  {row['gflops']:7.1f} GFLOP/s  "
              f"{row['fraction_of_peak']:6.1%} of {peaks[row['precision']]:.0f}  {row['video_s_per_s']:8.1f}x real time")
    print(f"-> {path} ({result['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
