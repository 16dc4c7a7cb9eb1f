"""A video's face-mesh tracks and audio, optionally tracked in a background thread.

``syncopt sync`` with its default lip model starts tracking the first video's faces before it
imports torch and builds the model: importing torch is about 1.6 s of Python on one core, and the
face mesh (native code that releases the GIL) and video decoding run beside it on the other.
This module imports no torch, so that the tracking really starts first.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from syncopt.data.landmarks import LandmarkTrack, track_video
from syncopt.data.lipcache import FPS, SAMPLE_RATE  # the lip models' timeline (EarlyMeshes.take checks the model's)
from syncopt.data.media import FrameSource, decode_audio


@dataclass
class MeshedVideo:
    """A video's frame source (of :class:`~syncopt.data.media.LazyFrame`), its audio at ``sample_rate``
    and every face-mesh track, longest first."""

    source: FrameSource
    samples: np.ndarray
    tracks: list[LandmarkTrack]


def mesh_video(path: str | os.PathLike, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> MeshedVideo:
    """Open ``path`` (one-line errors for missing or non-media files, or no audio), decode its audio
    and track every face with the face mesh; a video without faces has no tracks."""
    source = FrameSource(path, fps=fps, native=True, lazy=True)  # only the faces' regions become RGB
    samples = decode_audio(path, sample_rate=sample_rate).samples
    return MeshedVideo(source, samples, track_video(source, min_track=1))


class EarlyMeshes:
    """:func:`mesh_video` of one video, running in a daemon thread from construction on."""

    def __init__(self, path: str | os.PathLike, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> None:
        self.key = (str(path), fps, sample_rate)
        self._result: MeshedVideo | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="syncopt-early-meshes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = mesh_video(*self.key)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread by take)
            self._error = exc

    def take(self, path: str | os.PathLike, fps: float, sample_rate: int) -> MeshedVideo | None:
        """The meshes when they are of ``path`` at these rates (its error re-raised here), else None.
        Waits for the thread either way: the face models are shared and not thread-safe."""
        self._thread.join()
        if (str(path), fps, sample_rate) != self.key:
            return None
        if self._error is not None:
            raise self._error
        return self._result
