"""Streaming sync with fcn_causal: per-chunk latency (torch StreamingSync; the exported 5-frame
ONNX and TFLite steps in their runtimes), algorithmic latency, streaming-vs-offline error (torch
and both artifacts streamed by StreamingSync) and running-offset accuracy.

Usage: python benchmarks/bench_stream.py [--weights W] [--clips 40]
Writes benchmarks/results/stream.json. Per-chunk latency is wall time of one ``push`` (MFCC,
crop normalisation, model step, decisions) on this machine's CPU threads as set by torch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from syncopt.data.media import fit_audio
from syncopt.data.synth import SynthConfig, make_clip, split_seed
from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor
from syncopt.export.stream import export_stream
from syncopt.inference.streaming import StreamingSync
from syncopt.models.sources import resolve

from results_io import write_results


def stream_clip(model, clip, chunk: int) -> tuple[StreamingSync, list, list[float]]:
    """Push a clip chunk by chunk; returns the stream, its results and each push's seconds."""
    stream = StreamingSync(model, record=True)
    spf = 640
    results, times = [], []
    for start in range(0, len(clip.frames), chunk):
        t0 = time.perf_counter()
        results += stream.push(clip.frames[start:start + chunk], clip.audio[start * spf:(start + chunk) * spf])
        times.append(time.perf_counter() - t0)
    results += stream.finish()
    return stream, results, times


def step_latency(session, feeds: dict, repeats: int = 100) -> dict[str, float]:
    """Median and p90 milliseconds of one ``session.run`` after 5 warm-up runs."""
    for _ in range(5):
        session.run(feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(feeds)
        times.append(time.perf_counter() - t0)
    return {"step_ms_median": 1000 * float(np.median(times)), "step_ms_p90": 1000 * float(np.percentile(times, 90))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=250, help="frames per latency clip (10 s)")
    args = parser.parse_args()
    source = resolve("fcn_causal", "tiny", args.weights, shipped=True)
    model, weights, _ = source.build(), str(source.weights), source.synthetic
    pre = model.spec.preprocessing
    torch.set_num_threads(1)
    long_clip = make_clip(split_seed("test", 0), SynthConfig(num_frames=args.frames))

    chunks = {}
    for chunk in (1, 5, 10, 25):
        stream, _, times = stream_clip(model, long_clip, chunk)
        steady = np.array(times[2:]) * 1000
        chunks[str(chunk)] = {"chunk_ms": 1000 * chunk / pre.fps, "push_ms_median": float(np.median(steady)),
                              "push_ms_p90": float(np.percentile(steady, 90)),
                              "realtime_factor": float(np.median(steady) / (1000 * chunk / pre.fps)),
                              "algorithmic_latency_ms": stream.latency_ms(chunk)}

    with tempfile.TemporaryDirectory() as tmp:
        from syncopt.runtimes import load

        streamers: dict[str, object] = {"torch": model}
        steps = {}
        for fmt in ("onnx", "tflite"):
            artifact = export_stream(model, fmt, tmp, chunk_frames=5)
            session = streamers[fmt] = load(artifact, threads=1)
            steps[fmt] = {"chunk_frames": 5, **step_latency(session, artifact.spec.example_inputs()),
                          "bytes": artifact.path.stat().st_size}

        errors: dict[str, list[float]] = {name: [] for name in streamers}
        final_hits, final_near, frame_hits, frame_count = [], [], 0, 0
        for i in range(args.clips):
            clip = make_clip(split_seed("test", 1000 + i), SynthConfig(num_frames=75))
            t = len(clip.frames)
            with torch.no_grad():
                offline = model(video=frames_to_tensor(clip.frames, pre)[None],
                                audio=audio_to_tensor(fit_audio(clip.audio, t), t, pre)[None])["offset_logits"][0]
            runs = {name: stream_clip(streamer, clip, 5) for name, streamer in streamers.items()}
            for name, (stream, _, _) in runs.items():
                logits = np.stack([o["offset_logits"] for o in stream.outputs], axis=-1)
                errors[name].append(float(np.abs(logits - offline.numpy()).max()))
            results = runs["torch"][1]
            final_hits.append(results[-1].offset == clip.offset)
            final_near.append(abs(results[-1].offset - clip.offset) <= 1)
            partner = np.arange(t) - clip.per_frame_offset
            usable = clip.per_frame_valid & (partner >= 0) & (partner < t)
            frame_hits += int(((np.array([r.frame_offset for r in results]) == clip.per_frame_offset) & usable).sum())
            frame_count += int(usable.sum())

    summary = {
        "model": "fcn_causal", "preset": "tiny", "weights": Path(weights).name,
        "lookahead_frames": model.lookahead, "params": sum(p.numel() for p in model.parameters()),
        "torch_threads": 1, "latency_clip_frames": args.frames, "per_chunk": chunks, "exported_steps": steps,
        "equivalence_max_abs_logit_error": {name: max(e) for name, e in errors.items()},
        "equivalence_clips": args.clips,
        "running_offset_accuracy_at_3s": float(np.mean(final_hits)),
        "running_offset_accuracy_pm1_at_3s": float(np.mean(final_near)),
        "per_frame_accuracy": frame_hits / max(frame_count, 1),
    }
    write_results("stream", summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
