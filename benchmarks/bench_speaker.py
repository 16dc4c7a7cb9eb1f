"""Active speaker detection on synthetic clips with the shipped ``fcn`` weights.

Two sets from the held-out test split: ``two_face`` clips of the synthetic generator (one face
speaks at the clip's offset, the other is another talking head), and two-person conversations
(:func:`syncopt.inference.speakers.conversation`: both faces always move their lips, the audio alternates
between the voices in 2-4 turns). Metrics: frame-level accuracy and per-speaker temporal IoU.

Usage: python benchmarks/bench_speaker.py [--clips 40] [--model fcn]
Writes benchmarks/results/speaker.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from syncopt.data.synth import SynthConfig, make_clip, split_seed
from syncopt.inference.speakers import (MIN_FRAMES, THRESHOLD, active_speaker, conversation, frame_accuracy, frame_scores,
                                        turn_iou)
from syncopt.inference.sync import score_faces
from syncopt.models.sources import resolve

from results_io import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--model", default="fcn")
    args = parser.parse_args()
    source = resolve(args.model, "tiny", None, shipped=True)
    model, weights, _ = source.build(), str(source.weights), source.synthetic
    sets = {"two_face": [], "conversation": []}
    for i in range(args.clips):
        clip = make_clip(split_seed("test", 2000 + i), SynthConfig(num_frames=75), kind="two_face")
        timeline = active_speaker(frame_scores(score_faces(model, list(clip.faces), clip.audio), 75), 25.0)
        truth = np.full(75, clip.speaker)
        sets["two_face"].append((frame_accuracy(timeline.per_frame, truth), turn_iou(timeline.per_frame, truth)))
        faces, audio, truth = conversation(split_seed("test", 3000 + i), 150, turns=2 + i % 3)
        timeline = active_speaker(frame_scores(score_faces(model, list(faces), audio), 150), 25.0)
        sets["conversation"].append((frame_accuracy(timeline.per_frame, truth), turn_iou(timeline.per_frame, truth)))
    summary = {"model": args.model, "preset": "tiny", "weights": Path(weights).name, "threshold": THRESHOLD,
               "min_turn_frames": MIN_FRAMES, "clips_per_set": args.clips,
               "two_face_frames": 75, "conversation_frames": 150}
    for name, rows in sets.items():
        acc, iou = np.array(rows).T
        summary[name] = {"frame_accuracy": float(acc.mean()), "segment_iou": float(iou.mean()),
                         "clips_all_frames_right": float((acc == 1).mean())}
    write_results("speaker", summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
