"""Error types with one-line messages and distinct exit codes.

The CLI catches :class:`SyncoptError`, prints ``error: <message>`` on one line and exits with
the subclass's ``exit_code``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations


class SyncoptError(Exception):
    """Base class: a user-facing problem, reported as one line."""

    exit_code = 1


class UsageError(SyncoptError):
    """Unknown model, format or option value."""

    exit_code = 2


class InputFileError(SyncoptError):
    """A file that does not exist or cannot be read."""

    exit_code = 3


class MediaError(SyncoptError):
    """A file that is not decodable media, or is corrupt/truncated."""

    exit_code = 4


class NoAudioError(MediaError):
    """Media without a usable audio stream (absent, silent or constant)."""

    exit_code = 5


class ClipTooShortError(SyncoptError):
    """A clip shorter than the model's receptive field."""

    exit_code = 6


class WeightsError(SyncoptError):
    """A checkpoint that is truncated, unsafe, or belongs to another model."""

    exit_code = 7


class InputSpecError(SyncoptError):
    """Tensors whose name, shape, dtype or values (NaN/Inf) do not match a model's spec."""

    exit_code = 8


class ParityError(SyncoptError):
    """An artifact whose outputs breach the parity tolerances."""

    exit_code = 9


class BackendUnavailable(SyncoptError):
    """An optional back-end (Python package or device) that this machine lacks."""

    exit_code = 10


class ExportError(SyncoptError):
    """A model the back-end cannot convert as asked (unsupported op, Flex op in a mobile build ...)."""

    exit_code = 11


class BundleError(SyncoptError):
    """A bundle that fails verification, or an archive that is unsafe to extract."""

    exit_code = 12


class GateBreach(SyncoptError):
    """One or more CI gates failed."""

    exit_code = 13


class RecipeError(SyncoptError):
    """A recipe file that is malformed, or names unknown stages, models or references."""

    exit_code = 14


class OutputFileError(SyncoptError):
    """An output path that cannot be written (no permission, a file where a folder should be, disk full)."""

    exit_code = 15


class BenchFailure(SyncoptError):
    """A benchmark in which some runtime x batch x frames cells failed (the report says why)."""

    exit_code = 16


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a command (exit 128 + the signal's number: 130, 143).

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` carries on with the
    work; on its way out every temporary file and folder is removed.
    """

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
