"""Per-clip preprocessing written once: the face mesh of the speaker's track, MFCC and speech energy.

Decoding and the face mesh are the expensive part of training and evaluating on real video; this
cache runs them once per clip and stores a compressed ``.npz`` named by the clip's sha256 (so a
renamed or copied file hits the cache and an edited one misses it), written atomically. A folder
is processed clip by clip and resumes where it stopped. Only the longest face track is kept (a
talking-head clip's speaker).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.core.errors import MediaError
from syncopt.data.lipfeatures import lip_shape, mouth_opening, speech_energy

CACHE_VERSION = 4  # 3: meshes tracked on the video's own frames, interpolated onto 25 fps; 4: followed regions averaged
FPS, SAMPLE_RATE = 25.0, 16000


@dataclass(frozen=True)
class ClipFeatures:
    """One clip's cached signals, all at 25 fps (MFCC at 4 columns a frame)."""

    name: str
    sha256: str
    start: int  # first frame of the face track
    points: np.ndarray  # (n, 468, 3) face mesh in frame pixels
    opening: np.ndarray  # (n,) inner-lip opening (syncopt.data.lipfeatures.mouth_opening)
    mfcc: np.ndarray  # (13, 4 * num_frames) raw MFCC of the whole clip
    energy: np.ndarray  # (num_frames,) band log-energy of the whole clip
    num_frames: int

    @property
    def frames(self) -> int:
        """Frames of the face track."""
        return len(self.points)

    @functools.cached_property
    def lips(self) -> np.ndarray:
        """``(n, 40, 3)`` pose-free lip contour (:func:`syncopt.data.lipfeatures.lip_shape`), computed once:
        evaluation reads it at every audio shift."""
        return lip_shape(self.points)


def extract(path: str | os.PathLike, detect_every: int = 5) -> ClipFeatures:
    """Decode ``path``, track faces with the face mesh and compute the signals of its longest track."""
    from syncopt.data.landmarks import track_video
    from syncopt.data.media import FrameSource, decode_audio, fit_audio, mfcc_for_frames

    source = FrameSource(path, fps=FPS, native=True, lazy=True)
    tracks = track_video(source, detect_every=detect_every)
    if not tracks:
        raise MediaError(f"no face found in {Path(path).name}")
    track = tracks[0]
    audio = fit_audio(decode_audio(path, sample_rate=SAMPLE_RATE).samples, source.num_frames, FPS, SAMPLE_RATE)
    return ClipFeatures(
        name=Path(path).name, sha256=sha256_file(path), start=track.start,
        points=track.points.astype(np.float32), opening=mouth_opening(track.points),
        mfcc=mfcc_for_frames(audio, source.num_frames, SAMPLE_RATE, FPS),
        energy=speech_energy(audio, source.num_frames, SAMPLE_RATE, FPS), num_frames=source.num_frames,
    )


def default_cache_dir() -> Path:
    """``$SYNCOPT_CACHE``, else ``$XDG_CACHE_HOME/syncopt/lips`` (``~/.cache/syncopt/lips``)."""
    if os.environ.get("SYNCOPT_CACHE"):
        return Path(os.environ["SYNCOPT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syncopt" / "lips"


def load_or_extract(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> ClipFeatures:
    """:func:`extract`, read from / written to ``cache_dir`` (default :func:`default_cache_dir`)."""
    digest = sha256_file(path)
    target = Path(cache_dir or default_cache_dir()) / f"{digest}.v{CACHE_VERSION}.npz"
    if target.is_file():
        with np.load(target) as data:
            return ClipFeatures(name=Path(path).name, sha256=digest, start=int(data["start"]), points=data["points"],
                                opening=data["opening"], mfcc=data["mfcc"], energy=data["energy"],
                                num_frames=int(data["num_frames"]))
    clip = extract(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, start=clip.start, points=clip.points, opening=clip.opening, mfcc=clip.mfcc,
                                energy=clip.energy, num_frames=clip.num_frames)
    return clip


def build_cache(paths: Iterable[Path], cache_dir: str | os.PathLike | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> tuple[list[ClipFeatures], list[str]]:
    """Every clip of ``paths`` through the cache; clips that fail are skipped and named."""
    from syncopt.core.errors import SyncoptError

    paths = list(paths)
    clips, failed = [], []
    for i, path in enumerate(paths):
        try:
            clips.append(load_or_extract(path, cache_dir))
        except SyncoptError as exc:
            failed.append(f"{path.name}: {exc}")
        if progress is not None:
            progress(i + 1, len(paths), path.name)
    return clips, failed
