"""Data-parallel throughput (issue 10): training samples/s of a tiny ``syncopt distill`` under
``torchrun`` with 1 process (1 thread, and all cores as threads) and N processes (cores split
between them), run alternately on the same machine.

Usage: python benchmarks/bench_distributed.py [--procs 2] [--clips 64] [--epochs 3] [--repeats 2]
Writes benchmarks/results/distributed.json. Time is the report's ``train_time_s``: the student's
epochs with their rank-0 validation (kept to 4 clips), without process start-up, teacher loading
or clip generation. On a machine with few cores the gain is bounded by the cores, not by DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from syncopt.models.sources import shipped_weights

from results_io import write_results

TEACHER, STUDENT = "fcn", "mobile_2d"


def run(procs: int, threads: int, args: argparse.Namespace) -> float:
    """Samples/s of one ``torchrun --nproc-per-node procs`` distillation."""
    torchrun = Path(sys.executable).parent / "torchrun"
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(torchrun), "--standalone", "--nproc-per-node", str(procs), "-m", "syncopt", "distill",
               "--teacher", TEACHER, "--student", STUDENT, "--teacher-weights", str(shipped_weights(TEACHER, "tiny")),
               "--train-clips", str(args.clips), "--val-clips", "4", "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--out", out, "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": str(threads)})
        if done.returncode:
            sys.exit(f"torchrun failed ({done.returncode}): {done.stderr[-1500:]}")
        report = json.loads(done.stdout)
    clips = args.clips - args.clips % args.batch_size  # full global batches per epoch
    return clips * report["epochs_done"] / report["train_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--clips", type=int, default=64, help="synthetic training clips (2 s each)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch per step")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per setting; the best counts")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    # One process with one thread and with all cores as threads (intra-op parallelism), against
    # N processes sharing the cores. OpenMP threads suffer most when other work loads the cores.
    settings = {f"{procs}x{threads}": (procs, threads)
                for procs, threads in dict.fromkeys([(1, 1), (1, cores), (args.procs, max(1, cores // args.procs))])}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, (procs, threads) in settings.items():
            rates[name].append(run(procs, threads, args))
            print(f"{procs} process(es) x {threads} thread(s): {rates[name][-1]:.2f} samples/s", file=sys.stderr)
    best = {name: max(r) for name, r in rates.items()}
    single = max(best[name] for name, (procs, _) in settings.items() if procs == 1)
    multi = f"{args.procs}x{max(1, cores // args.procs)}"
    summary = {
        "task": f"syncopt distill {TEACHER} -> {STUDENT} (tiny), {args.clips} clips x {args.epochs} epochs, "
                f"global batch {args.batch_size}",
        "settings": {name: {"processes": procs, "threads_each": threads, "samples_per_s": rates[name],
                            "best_samples_per_s": best[name]} for name, (procs, threads) in settings.items()},
        "speedup_vs_best_single_process": best[multi] / single,
        "note": "best of alternating runs; the figures depend on how busy the machine's cores were",
    }
    path = write_results("distributed", summary)
    print(json.dumps({"samples_per_s": best, "speedup": round(summary["speedup_vs_best_single_process"], 3)}),
          f"-> {path}")


if __name__ == "__main__":
    main()
