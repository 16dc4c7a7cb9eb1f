"""Status lines for long-running work: on stderr, between progress bars, so stdout stays
machine-readable (``--json``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from tqdm.auto import tqdm


def status(message: str) -> None:
    """Print one status line to stderr without breaking an active progress bar (under torchrun:
    on rank 0 only)."""
    if os.environ.get("RANK", "0") == "0":
        tqdm.write(message, file=sys.stderr)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null meanwhile (native logging bypasses ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
