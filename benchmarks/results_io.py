"""Writing a benchmark's figures: ``benchmarks/results/NAME.json``, atomically, with the machine."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from syncopt.core.atomic import atomic_path
from syncopt.core.timing import cpu_info

RESULTS = Path(__file__).parent / "results"


def cpu() -> dict[str, str | list[str]]:
    """The CPU's model name, vendor and family and instruction sets (:func:`syncopt.core.timing.cpu_info`)."""
    return {k: v for k, v in cpu_info().items() if k in ("cpu", "cpu_family", "cpu_isa")}


def write_results(name: str, summary: dict) -> Path:
    """Add the machine it ran on (:func:`cpu`), and how busy it was (load averages over 1, 5 and 15 minutes
    at the end of the run: the CPU may be shared), to ``summary`` and write it to ``results/NAME.json``."""
    summary |= {"cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(), **cpu(),
                "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()]}
    path = RESULTS / f"{name}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return path
