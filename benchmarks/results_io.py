"""Writing a benchmark's figures: ``benchmarks/results/NAME.json``, atomically, with the machine."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from syncopt.core.atomic import atomic_path

RESULTS = Path(__file__).parent / "results"


# the vector and matrix units the runtimes choose kernels by (and bench_runtimes' peaks)
ISA = ("sse2", "fma", "avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict[str, str | list[str]]:
    """The CPU's model name, vendor and family, and which of :data:`ISA` it has (Linux; empty elsewhere):
    figures from one machine do not carry to another."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines() if ":" in line)}
    flags = set(fields.get("flags", "").split())
    return {"cpu": fields.get("model name", ""), "cpu_family": f"{fields.get('vendor_id', '')} {fields.get('cpu family', '')}",
            "cpu_isa": [f for f in ISA if f in flags]}


def write_results(name: str, summary: dict) -> Path:
    """Add the machine it ran on (:func:`cpu`), and how busy it was (load averages over 1, 5 and 15 minutes
    at the end of the run: the CPU may be shared), to ``summary`` and write it to ``results/NAME.json``."""
    summary |= {"cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(), **cpu(),
                "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()]}
    path = RESULTS / f"{name}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return path
