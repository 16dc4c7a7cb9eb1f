"""Speed of `syncopt sync` on real video, stage by stage and end to end (issue 19: at least 5x real
time on a 640x360 10-minute video, 2x on 1080p, peak RSS under 2 GiB).

Videos: ``latentsync_demo1_video.mp4`` from the shared development set (1080x1920 HEVC, 10 s, a
seated speaker; Apache-2.0, bytedance/LatentSync) as it is, and a 640x360 H.264 video made from it
(the 1080x608 band around the face, resized, looped with its audio to ``--minutes``; written to a
temporary folder, not kept). Per video: ``bench_pipeline`` (one streamed pass, per-stage wall time
per frame) and ``syncopt sync --json`` in a child process (wall time, CPU time and peak RSS of the
child; the median of ``--repeats`` runs on the 1080p clip) for each ``--models`` entry. The CPU may be shared: the load averages are recorded, and CPU
seconds per video second show what an idle machine would reach.

Usage: python benchmarks/bench_sync_pipeline.py [--minutes 10] [--models default,fcn:tiny] [--repeats 5]
Writes benchmarks/results/sync_pipeline.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from results_io import write_results
from syncopt.deploy.bench_pipeline import bench_pipeline
from syncopt.data.media import FrameSource, decode_audio

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "realclips" / "latentsync_demo1_video.mp4"
FACE_BAND = slice(450, 1058)  # rows of the 1080x1920 frame around the face: 608 = 1080 * 360 / 640


def make_640x360(out: Path, seconds: int) -> Path:
    """The face band of SOURCE at 640x360, H.264 + AAC mono, looped to ``seconds``."""
    frames = [cv2.resize(f[FACE_BAND], (640, 360), interpolation=cv2.INTER_AREA) for f in FrameSource(SOURCE)]
    audio = decode_audio(SOURCE, 44100).samples
    total = seconds * 25
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        sound = container.add_stream("aac", rate=44100)
        sound.layout = "mono"
        for i in range(total):
            for packet in video.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = np.tile(audio, -(-total // len(frames)))[:seconds * 44100].astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
            chunk.sample_rate = 44100
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return out


def run_sync(video: Path, model: str, repeats: int) -> dict:
    """``syncopt sync`` in a child ``repeats`` times: the median run's wall and CPU seconds per video
    second, and the largest child's peak RSS (``os.wait4``: each child's own resource usage)."""
    name, _, preset = model.partition(":")  # "default": sync's own default model and weights
    chosen = [] if name == "default" else ["--model", name] + (["--preset", preset] if preset else [])
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-m", "syncopt", "sync", str(video), *chosen, "--json"],
                                     stdout=out, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            if child.returncode:
                err.seek(0)
                return {"model": model, "error": err.read().decode().strip().splitlines()[-1]}
        runs.append((wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024))  # ru_maxrss in KiB
    wall, cpu, _ = sorted(runs)[len(runs) // 2]
    seconds = _duration(video)
    return {"model": model, "runs": repeats, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "realtime_factor": round(seconds / wall, 2), "cpu_realtime_factor": round(seconds / cpu, 2),
            "peak_rss_mib": round(max(r[2] for r in runs), 1)}


def _duration(video: Path) -> float:
    with av.open(str(video)) as container:
        return float(container.duration) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--models", default="default", help="'default' (sync's own) or name[:preset], comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="child runs on the 1080p clip (the median is kept); "
                                                                "the long video runs once")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        small = make_640x360(Path(tmp) / f"latentsync_demo1_640x360_{args.minutes:g}min.mp4", int(args.minutes * 60))
        videos = {"640x360": small, "1080x1920": SOURCE}
        # the children first: a child's peak RSS counts the pages it shares with this process at fork,
        # which bench_pipeline's passes would have grown
        syncs = {name: [run_sync(video, m, args.repeats if video is SOURCE else 1) for m in args.models.split(",")]
                 for name, video in videos.items()}
        for name, video in videos.items():
            report = bench_pipeline(str(video), repeats=1)  # sync's default model
            results[name] = {
                "video": video.name, "frames": report.frames,
                "pipeline_ms_per_frame": {s.stage: round(s.ms_p50 / report.frames, 3) for s in report.stages},
                "pipeline_realtime_factor": round(report.realtime_factor, 2),
                "sync": syncs[name],
            }
            print(name, results[name], flush=True)
    path = write_results("sync_pipeline", {"goal": "sync >= 5x real time at 640x360 (10 min), >= 2x at 1080p; "
                                                   "peak RSS < 2 GiB", "results": results})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
