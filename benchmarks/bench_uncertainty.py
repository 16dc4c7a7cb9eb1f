"""When should `syncopt sync` say UNCERTAIN on real video? The offset probability of whole real clips
whose audio is their own (delayed by known shifts) against clips whose audio is another clip's.

For each clip of a list, its audio is shifted by every k of --shifts and the sync model's whole-track
offset probability (the share of 1-s windows agreeing with the clip offset, as `syncopt sync` computes
it) is recorded with whether the decision followed the shift (within +-1, the clip's own base estimated
as in `syncopt evaluate --data`); then every clip's lips are paired with every other clip's audio
(no offset is right). The threshold that best separates right answers from mismatched audio
(balanced accuracy) is chosen on the dev clips and reported on the held-out clips.

Usage: python benchmarks/bench_uncertainty.py [--dev benchmarks/realclips/dev.csv]
       [--test benchmarks/realclips/test.csv] [--weights W] [--timeline-frames 1 --name uncertainty_per_frame]
Writes benchmarks/results/uncertainty.json (or NAME.json). Features come from the lip cache ($SYNCOPT_CACHE).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from syncopt.analysis.shift_eval import shifted, valid_range
from syncopt.data.datasets import read_manifest
from syncopt.data.lipcache import ClipFeatures, load_or_extract
from syncopt.data.lipfeatures import lip_inputs
from syncopt.inference.calibration import UNCERTAIN_BELOW, offset_probability
from syncopt.models.decode import decode_dense
from syncopt.models.sources import resolve

from results_io import write_results

HERE = Path(__file__).parent


@torch.no_grad()
def verdict(model, clip: ClipFeatures, mfcc: np.ndarray, lo: int, hi: int, timeline: int) -> tuple[int, float]:
    """(offset, offset probability) of the track's frames lo..hi with ``mfcc`` (the whole clip's) as audio,
    the timeline pooling ``timeline`` frames."""
    start = clip.start
    video, audio = lip_inputs(clip.lips, mfcc[:, 4 * start:4 * (start + clip.frames)])
    logits = model(video=video[None, :, lo:hi], audio=audio[None, ..., 4 * lo:4 * hi])["offset_logits"][0]
    result = decode_dense(logits, timeline_frames=timeline)
    return result.offset, offset_probability(logits, result.offset, 1.0, timeline)


def collect(model, manifest: str, shifts: list[int], timeline: int) -> dict:
    listed = read_manifest(manifest)
    clips = [load_or_extract(p) for p, _ in listed]
    own = []
    for clip, (_, base) in zip(clips, listed):
        answers = []
        for k in shifts:
            lo, hi = valid_range(clip, k, base)  # the frames whose audio at the clip's own offset is in the clip
            answers.append((k, *verdict(model, clip, shifted(clip, k)[0], lo, hi, timeline)))
        base = int(np.median([o + k for k, o, _ in answers]))
        own += [{"clip": clip.name, "shift": k, "offset": o, "probability": p, "right": abs(o + k - base) <= 1}
                for k, o, p in answers]
    mismatched = []
    for a in clips:
        for b in clips:
            if a is b:
                continue
            n = min(a.num_frames, b.num_frames)
            lo, hi = 0, min(a.frames, n - a.start)
            if hi - lo < 25:
                continue
            mfcc = np.pad(b.mfcc[:, :4 * n], ((0, 0), (0, a.mfcc.shape[1] - 4 * n)), mode="edge")
            offset, p = verdict(model, a, mfcc, lo, hi, timeline)
            mismatched.append({"video": a.name, "audio": b.name, "offset": offset, "probability": p})
    return {"own": own, "mismatched": mismatched}


def rates(data: dict, threshold: float) -> dict:
    right = [r["probability"] for r in data["own"] if r["right"]]
    other = [r["probability"] for r in data["mismatched"]]
    return {"threshold": threshold, "right_answers": len(right), "mismatched_pairs": len(other),
            "right_flagged": float(np.mean([p < threshold for p in right])) if right else None,
            "mismatched_flagged": float(np.mean([p < threshold for p in other])) if other else None,
            "wrong_answers_on_own_audio": sum(not r["right"] for r in data["own"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", default=str(HERE / "realclips" / "dev.csv"))
    parser.add_argument("--test", default=str(HERE / "realclips" / "test.csv"))
    parser.add_argument("--weights", default=None)
    parser.add_argument("--shifts", default="-10,-5,0,5,10")
    parser.add_argument("--timeline-frames", type=int, default=None, help="instead of the model's spec (1: per frame)")
    parser.add_argument("--name", default="uncertainty")
    args = parser.parse_args()
    source = resolve(None, weights=args.weights, shipped=True)
    model = source.build()
    shifts = [int(s) for s in args.shifts.split(",")]
    timeline = args.timeline_frames or model.spec.timeline_frames
    dev, test = collect(model, args.dev, shifts, timeline), collect(model, args.test, shifts, timeline)
    candidates = np.round(np.arange(0.05, 0.95, 0.01), 2)

    def balanced(t: float) -> float:
        r = rates(dev, t)
        return (1 - r["right_flagged"] + r["mismatched_flagged"]) / 2

    best = float(max(candidates, key=balanced))
    summary = {"model": f"{model.spec.name}/{model.spec.preset}", "weights": str(source.weights), "shifts": shifts,
               "timeline_frames": timeline,
               "chosen_on_dev": rates(dev, best), "held_out_at_chosen": rates(test, best),
               "held_out_at_shipped_threshold": rates(test, UNCERTAIN_BELOW), "dev_at_shipped_threshold":
               rates(dev, UNCERTAIN_BELOW), "dev": dev, "held_out": test}
    path = write_results(args.name, summary)
    for name in ("chosen_on_dev", "held_out_at_chosen", "held_out_at_shipped_threshold"):
        print(name, {k: v for k, v in summary[name].items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
