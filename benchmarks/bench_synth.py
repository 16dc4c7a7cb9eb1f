"""Synthetic data generation speed: N clips of 2 s, serial vs a process pool, in one run.

Usage: python benchmarks/bench_synth.py [--count 1000] [--workers 2] [--crop 48]
Writes benchmarks/results/synth.json. Goal (issue 5): 1,000 clips under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import time

from syncopt.data.synth import SynthConfig, make_clips

from results_io import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crop", type=int, default=48)
    args = parser.parse_args()
    config = SynthConfig(crop_size=args.crop)
    kinds = {"constant": 0.7, "drift": 0.15, "cutin": 0.15}
    timings = {}
    for workers in sorted({1, args.workers}):
        start = time.perf_counter()
        make_clips("train", args.count, config, kinds=kinds, workers=workers)
        timings[workers] = time.perf_counter() - start
        print(f"{args.count} clips (2 s, crop {args.crop}) with {workers} worker(s): {timings[workers]:.1f} s "
              f"= {args.count / timings[workers]:.1f} clips/s")
    result = {"count": args.count, "crop": args.crop, "seconds": timings,
              "speedup": timings[1] / timings[args.workers], "goal_seconds": 60,
              "meets_goal": timings[args.workers] < 60}
    out = write_results("synth", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
