"""Status lines for long-running work: on stderr, between progress bars, so stdout stays
machine-readable (``--json``)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def status(message: str) -> None:
    """Print one status line to stderr without breaking an active progress bar."""
    tqdm.write(message, file=sys.stderr)
