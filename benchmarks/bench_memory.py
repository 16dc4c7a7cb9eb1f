"""Peak memory of `syncopt sync` on a 10-minute 640x360 video (issues 5 and 11: bounded memory).

The video loops tests/fixtures/example.avi (a real face, 224x224, 12.68 s) on a 640x360 canvas,
with its audio, for ``--minutes``. `syncopt sync` runs in a child process; its peak resident set
size (getrusage ru_maxrss of the child) is compared with what the decoded frames alone would take
in memory. Goal: under 2 GiB with the tiny shipped weights, face detection on.

Usage: python benchmarks/bench_memory.py [--minutes 10] [--model fcn]
Writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "fixtures" / "example.avi"
WIDTH, HEIGHT = 640, 360


def make_long_video(path: Path, minutes: float) -> int:
    """Loop the example clip onto a 640x360 canvas for ``minutes``; returns the frame count."""
    sys.path.insert(0, str(ROOT / "tests"))
    from syncopt.data.media import load_media

    clip = load_media(EXAMPLE)
    repeats = int(np.ceil(minutes * 60 / clip.duration))
    canvas = np.full((len(clip.frames), HEIGHT, WIDTH, 3), 90, np.uint8)
    top, left = (HEIGHT - 224) // 2, (WIDTH - 224) // 2
    canvas[:, top:top + 224, left:left + 224] = clip.frames
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt, video.bit_rate = WIDTH, HEIGHT, "yuv420p", 1_500_000
        audio = container.add_stream("pcm_s16le", rate=16000)
        audio.layout = "mono"
        samples = (clip.audio * 32767).astype(np.int16)[None]
        for r in range(repeats):
            for image in canvas:
                container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            frame = av.AudioFrame.from_ndarray(samples, format="s16p", layout="mono")
            frame.sample_rate, frame.pts = 16000, r * samples.shape[1]
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return repeats * len(clip.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="fcn")
    args = parser.parse_args()
    video = ROOT / "runs" / f"long_{args.minutes:g}min.mp4"
    video.parent.mkdir(exist_ok=True)
    frames = make_long_video(video, args.minutes) if not video.exists() else None
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "syncopt", "sync", str(video), "--model", args.model, "--json"],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"syncopt sync failed: {res.stderr.strip()}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    [result] = json.loads(res.stdout)
    frames = result["frames"]
    summary = {
        "video": f"{args.minutes:g} min, {WIDTH}x{HEIGHT}, 25 fps ({frames} frames), example.avi looped",
        "model": args.model, "preset": "tiny (shipped synthetic-data weights)", "crop": "detect",
        "peak_rss_mib": round(peak_mib, 1),
        "decoded_frames_would_take_mib": round(frames * WIDTH * HEIGHT * 3 / 2**20, 1),
        "tracks": len(result["tracks"]), "offset_frames": [t["offset_frames"] for t in result["tracks"]],
        "wall_s": round(wall, 1), "goal_peak_mib": 2048, "meets_goal": peak_mib < 2048,
    }
    write_results("memory", summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
