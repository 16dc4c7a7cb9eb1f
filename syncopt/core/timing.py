"""Timing and memory measurement shared by every benchmark: side-by-side timing, latency percentiles,
peak RSS growth, and what machine the figures come from."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

MEMORY_METHOD = "peak RSS growth during the passes (VmHWM reset via /proc/self/clear_refs)"


# the vector and matrix units the runtimes choose kernels by (and benchmarks/bench_runtimes.py's peaks)
ISA = ("sse2", "fma", "avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_info() -> dict[str, str | float | list[str]]:
    """From /proc/cpuinfo (Linux; empty elsewhere): the model name, vendor and family, the highest clock in
    MHz, and which of :data:`ISA` the CPU has. Figures from one machine do not carry to another."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines() if ":" in line)}
    flags = set(fields.get("flags", "").split())
    mhz = [float(x) for x in re.findall(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.M)]
    return {"cpu": fields.get("model name", ""), "cpu_family": f"{fields.get('vendor_id', '')} {fields.get('cpu family', '')}",
            "mhz": max(mhz, default=None), "cpu_isa": [f for f in ISA if f in flags]}


def machine_info() -> dict[str, str | int | float | None]:
    """CPU model, core count, clock (MHz, from /proc/cpuinfo) and library versions."""
    import torch

    cpu = cpu_info()
    info: dict[str, str | int | float | None] = {
        "cpu": cpu.get("cpu") or platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "mhz": cpu.get("mhz"), "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "torch": torch.__version__,
    }
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def percentiles(samples_s: list[float]) -> tuple[float, float, float, float]:
    """p50, p90, p99 and mean of latencies, in milliseconds."""
    ms = np.asarray(samples_s) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return float(p50), float(p90), float(p99), float(ms.mean())


def _status_kb(key: str) -> int | None:
    with contextlib.suppress(OSError):
        if m := re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M):
            return int(m.group(1))
    return None


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[float | None]]:
    """Yield a one-item list that holds, afterwards, the peak RSS growth in MB (None off Linux)."""
    result: list[float | None] = [None]
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kb("VmRSS")
    except OSError:
        before = None
    yield result
    peak = _status_kb("VmHWM")
    if before is not None and peak is not None:
        result[0] = max(0, peak - before) / 1024.0


def time_runs(fn: Callable[[], object], warmup: int, repeats: int, min_repeats: int, max_seconds: float) -> list[float]:
    """Wall-clock seconds of each timed call of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < repeats and (len(samples) < min_repeats or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def interleaved_times(calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                      on_round: Callable[[dict[str, list[float]]], None] | None = None,
                      min_seconds: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls``, measured side by side: ``warmup`` untimed calls each, then
    ``rounds`` rounds that call each once in an order rotated per round, so load on the machine hits all
    alike (ratios: the median over rounds of per-round ratios). ``on_round`` sees the times so far.

    With ``min_seconds``, a round calls each again until that long has passed and records the median
    of its calls: a call of 0.1 s is otherwise one sample per round, at the mercy of any moment's load,
    beside a 7-s contender that averages the load over its own length."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples, start = [], time.perf_counter()
            while not samples or time.perf_counter() - start < min_seconds:
                t0 = time.perf_counter()
                calls[name]()
                samples.append(time.perf_counter() - t0)
            times[name].append(float(np.median(samples)))
        if on_round:
            on_round(times)
    return times
