"""ONNX Runtime INT8 against fp32 at batch 1, side by side: issue 7's ">= 2x" bar at 1 s and 10 s clips.

Usage: python benchmarks/bench_int8_ort.py [--rounds 15] [--work runs/bench_int8_ort] [--student DIR]

For each model (tiny x3d_s: the distilled student of --student when given, else random weights; tiny
mobile_2d; full x3d_s, random weights: speed does not depend on their values) it writes the fp32 ONNX
export and the ``syncopt quantize --method ort`` INT8 artifacts without and with ``--lower-conv3d``, then
times one-thread sessions per clip length (25 and 250 frames): fp32 as exported, fp32 with the Conv3d
lowering (:mod:`syncopt.export.lowering`; is a gain INT8's or the lowering's?), INT8 with 3D convolutions
float and INT8 lowered. Each round runs each once in a rotated order; a ratio is the median over rounds
of the per-round ratio.
Writes benchmarks/results/int8_ort.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from results_io import write_results

import syncopt
from syncopt.core.timing import interleaved_times
from syncopt.models.sources import resolve
from syncopt.compress.quantize import QuantizeConfig, calibration_set
from syncopt.compress.quantize.ort import ort_int8
from syncopt.export.lowering import lower_conv3d

CLIPS = (25, 250)  # 1 s and 10 s at 25 fps
FULL_ROUNDS = 3  # the full x3d_s takes about 1 s per 10 s clip


def sessions(model: torch.nn.Module, work: Path) -> dict[str, object]:
    """One-thread ONNX Runtime sessions of ``model``: fp32, INT8, and both with 3D convolutions lowered."""
    import onnxruntime as ort

    paths = {}
    for lower in (False, True):
        config = QuantizeConfig(calibration_clips=8, frames=25, lower_conv3d=lower)
        fp32, int8 = ort_int8(model, calibration_set(model.spec, config), config, work / ("lowered" if lower else "3d"))
        paths["int8_lowered" if lower else "int8"] = int8.path
    graph = onnx.load(str(fp32.path))
    if lower_conv3d(graph):
        paths["fp32_lowered"] = fp32.path.with_name(fp32.path.name.replace("_fp32", "_fp32_lowered"))
        onnx.save(graph, str(paths["fp32_lowered"]))
    else:  # nothing to lower: the same graphs
        del paths["int8_lowered"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in {"fp32": fp32.path, **paths}.items()}


def timed(runs: dict[str, object], feeds: dict[str, np.ndarray], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each session: a warm-up each, then ``rounds`` rotated rounds."""
    return interleaved_times({name: functools.partial(session.run, None, feeds) for name, session in runs.items()}, rounds)


def row(times: dict[str, list[float]]) -> dict:
    base = np.asarray(times["fp32"])
    return {"median_ms": {k: 1000 * float(np.median(v)) for k, v in times.items()},
            "speedup_vs_fp32": {k: float(np.median(base / np.asarray(v))) for k, v in times.items() if k != "fp32"},
            "rounds": len(base)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--work", default="runs/bench_int8_ort")
    parser.add_argument("--student", default=None, help="run directory of a distilled tiny x3d_s")
    args = parser.parse_args()
    torch.manual_seed(0)
    work = Path(args.work)
    models = {"x3d_s tiny" + (" (distilled)" if args.student else ""):
              resolve(args.student).build() if args.student else syncopt.create("x3d_s", "tiny"),
              "mobile_2d tiny": syncopt.create("mobile_2d", "tiny"), "x3d_s full": syncopt.create("x3d_s", "full")}
    start, result = time.perf_counter(), {}
    for label, model in models.items():
        runs = sessions(model.eval(), work / label.split(" (")[0].replace(" ", "_"))
        for frames in CLIPS:
            feeds = {k: v.numpy() for k, v in model.spec.example_inputs(T=frames, batch=1, seed=0).items()}
            rounds = FULL_ROUNDS if "full" in label and frames > 25 else args.rounds
            result[f"{label} T={frames}"] = row(timed(runs, feeds, rounds))
            print(label, frames, json.dumps(result[f"{label} T={frames}"]["speedup_vs_fp32"]), flush=True)
    summary = {"method": "one ONNX Runtime thread per session, batch 1; rotated interleaved rounds; ratio = median "
                         "of per-round fp32/x", "results": result, "wall_time_s": time.perf_counter() - start}
    print(f"wrote {write_results('int8_ort', summary)}")


if __name__ == "__main__":
    main()
